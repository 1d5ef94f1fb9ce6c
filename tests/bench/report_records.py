"""Hand-made result records with known values, for the analysis and report tests.

Their shapes follow the records refbench writes (bench.cell, bench.convergence,
bench.kernel_softmax, bench.kernel_conv2d); their numbers are chosen so
speed-ups, geomeans and ratios come out round.
"""
from bench.results import make_record

GPU = {"env_key": "gpu0", "gpu": "NVIDIA H100 80GB HBM3", "cpu": "Intel Xeon", "threads": 8, "torch": "2.14.1",
       "cuda": "13.0", "git_commit": "abc123", "host": "box"}
CPU = {"env_key": "cpu0", "gpu": None, "cpu": "AMD EPYC", "threads": 1, "torch": "2.14.1", "git_commit": "abc123",
       "host": "vm"}


def throughput(workload, backend, samples_per_s, *, mode="train", batch_size=128, env=GPU, peak_mib=3, cv=0.01,
               run_id="r1", **metrics):
    """An ok matrix cell whose latency samples and memory match ``samples_per_s`` and ``peak_mib``."""
    median = 1e3 * batch_size / samples_per_s
    memory = "peak_allocated_bytes" if env.get("gpu") else "peak_rss_delta_bytes"
    samples = [median * (1 - cv), median, median * (1 + cv)]
    return make_record(run_id=run_id, env=env, workload=workload, backend=backend, mode=mode, batch_size=batch_size,
                       dataset="synthetic", status="ok", metrics={
                           "samples_per_s": samples_per_s, memory: peak_mib * 2**20,
                           f"first_step_{memory}": 2 * peak_mib * 2**20, "first_step_ms": 50.0,
                           "latency_ms": {"median": median, "p10": samples[0], "p90": samples[2], "cv": cv, "n": 3,
                                          "samples": samples},
                           "correctness": {"precision": "fp32", "tolerance": 1e-4, "compared": True,
                                           "max_rel_err": 5e-5, "max_abs_err": 1e-6, "worst": "output[0]"},
                           **metrics})


def not_run(workload, backend, status, error, *, mode="train", batch_size=128, env=GPU, **fields):
    return make_record(run_id="r1", env=env, workload=workload, backend=backend, mode=mode, batch_size=batch_size,
                       status=status, error=error, **fields)


def converge(workload, backend="cuda", *, reached=True, env=GPU, **metrics):
    curve = [{"epoch": 1, "step": 100, "train_s": 2.0, "train_loss": 0.9, "metrics": {"accuracy": 0.80}},
             {"epoch": 2, "step": 200, "train_s": 4.0, "train_loss": 0.5, "metrics": {"accuracy": 0.91 if reached else 0.85}}]
    return make_record(run_id="r2", env=env, workload=workload, backend=backend, mode="converge", batch_size=128,
                       dataset="fashion-mnist", status="ok", metrics={
                           "curve": curve, "target_metric": "accuracy", "threshold": 0.9, "reached": reached,
                           "time_to_target_s": 4.0 if reached else None, "train_s": 4.0, "recipe": "fast", **metrics})


def softmax_kernel(backend, gbps, *, n=1024, direction="fwd", env=GPU):
    return make_record(run_id="r3", env=env, workload="softmax", backend=backend, mode="kernel",
                       variant={"M": 4096, "N": n, "dtype": "float16", "direction": direction}, status="ok",
                       metrics={"time_ms": 1.0, "gbps": gbps, "copy_gbps": 400.0, "max_abs_err": 1e-4,
                                "first_call_s": 0.1})


def conv_kernel(backend, tflops, *, roofline_fraction, env=GPU):
    layer = {"name": "lenet5.features.0", "in_channels": 1, "out_channels": 6, "kernel_size": 5, "stride": 1,
             "padding": 2, "dilation": 1, "groups": 1, "height": 28, "width": 28}
    return make_record(run_id="r3", env=env, workload=layer["name"], backend=backend, mode="kernel", batch_size=128,
                       variant={"precision": "bf16", "direction": "fwd", "layer": layer}, status="ok",
                       metrics={"time_ms": 2.0, "tflops": tflops, "roofline_fraction": roofline_fraction,
                                "roofline_ms": 2.0 * roofline_fraction, "matmul_peak_tflops": 700.0,
                                "copy_gbps": 3000.0, "max_abs_err": 1e-3, "first_call_s": 0.5})


def matrix():
    """A GPU matrix with round answers: mlp 8x and rnn_rows 2x faster on cudagraphs (geomean 4x), mlp
    half as fast on compile; cudagraphs uses twice the memory of cuda; a wrong answer, a skip, a timeout."""
    return [
        throughput("mlp", "cuda", 50_000, run_id="r0"),   # replaced by the later record of the same cell
        throughput("mlp", "cuda", 100_000),
        throughput("mlp", "cudagraphs", 800_000, peak_mib=6),
        throughput("mlp", "compile", 50_000, compile_s=12.5),
        throughput("rnn_rows", "cuda", 60_000, cv=0.2),
        throughput("rnn_rows", "cudagraphs", 120_000, peak_mib=6, joules_per_sample=2e-4, mean_watts=350.0),
        throughput("mlp", "cuda", 400_000, mode="infer"),
        throughput("mlp", "cudagraphs", 1_200_000, mode="infer"),
        not_run("lenet5", "cuda", "failed", "wrong answer: grad:fc.weight: relative error 2.00e-03 > 1e-04 (fp32)",
                dataset="synthetic", metrics={"correctness": {"precision": "fp32", "tolerance": 1e-4, "compared": True,
                                                              "max_rel_err": 2e-3, "worst": "grad:fc.weight"}}),
        not_run("rnn_rows", "channels-last", "skipped", "channels-last changes nothing in a model without Conv2d layers"),
        not_run("mlp", "compile-max-autotune", "timeout", "no result within 600 s, killed; its last output: x\ny\nz"),
    ]


def ddp(workload, world_size, samples_per_s, efficiency, *, env=CPU, run_id="r4"):
    """A ``refbench ddp`` record of one world size."""
    return make_record(run_id=run_id, env=env, workload=workload, backend="cpu", mode="ddp", batch_size=64 * world_size,
                       dataset="synthetic", status="ok",
                       variant={"world_size": world_size, "scaling": "weak", "dist_backend": "gloo"},
                       metrics={"samples_per_s": samples_per_s, "scaling_efficiency": efficiency,
                                "allreduce_share": 0.25})
