"""The one table of metrics: every figure a record's ``metrics`` may hold, with its unit and meaning.

A record's metrics are a nested dict; each entry here names one field by its
flattened name (``latency_ms.median``: the ``median`` of the ``latency_ms``
dict). A name ending in ``.*`` is a group whose fields are free-form (a
recipe's settings, the phases of a cell). ``records.schema.make_record``
refuses a metric this table does not know, so a producer cannot add a figure
without saying here what it is; the readers (the DataFrame's columns,
compare's and nightly's verdicts, the report's labels, ``docs/records.md``)
all take their names from this table.

``better`` is the direction a change is good in ("higher", "lower", or None
for a fact that is neither); ``family`` groups metrics the way ``--fail-on``
gates them (throughput, latency, memory, correctness, accuracy) or says what
else they are; ``judged`` marks the metrics compare, nightly and bisect give
verdicts on; ``timed`` those whose value is a function of the step times,
so that the raw samples decide whether a change is significant. ``kind`` is
the JSON type its value must have for the readers to use it (``KINDS``):
a figure with a unit or a direction is a number unless it says otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

FAMILIES = {
    "throughput": "work done per second",
    "latency": "time a step, a kernel or a compile takes",
    "memory": "bytes held at the peak",
    "energy": "joules and watts from NVML (GPU)",
    "correctness": "the step's answer against a float64 reference",
    "accuracy": "training to a target (refbench converge)",
    "scaling": "data-parallel scaling (refbench ddp)",
    "kernel": "what the compiled kernel is (static sm_90 check)",
    "noise": "how far the machine let the figures be trusted",
    "cost": "where a cell's own time went",
    "context": "what was measured and how",
}

# What a metric's value may be in JSON (null is always allowed: a figure that could not be had).
KINDS = {
    "number": "a number",
    "numbers": "a list of numbers",
    "flag": "true or false",
    "text": "a string",
    "list": "a list",
    "points": "a list of objects whose step, epoch, train_s and metrics' values are numbers",
    "any": "any JSON value",
}


@dataclass(frozen=True)
class Metric:
    name: str                    # flattened name; "group.*" for a group of free-form fields
    unit: str                    # "" for a count or a ratio, else its unit
    family: str
    description: str
    better: str | None = None    # "higher", "lower" or None
    judged: bool = False         # compare, nightly and bisect give it a verdict
    timed: bool = False          # derived from the step times, whose raw samples decide significance
    label: str = ""              # its column heading in tables (the name when empty)
    kind: str = ""               # one of KINDS; empty: "number" with a unit or a direction, else "any"

    @property
    def higher_is_better(self) -> bool:
        return self.better == "higher"

    @property
    def heading(self) -> str:
        return self.label or self.name

    @property
    def group(self) -> bool:
        return self.name.endswith(".*")

    @property
    def json_kind(self) -> str:
        """What its value must be (``KINDS``)."""
        return self.kind or ("number" if self.unit or self.better else "any")


def _m(name, unit, family, description, **kw) -> Metric:
    return Metric(name, unit, family, description, **kw)


_MEASUREMENT = ("samples", "median", "mean", "p10", "p90", "cv", "n", "block", "cpu_samples", "cpu_median",
                "cpu_cv", "cpu_p10", "cpu_p90")
_MEASUREMENT_HELP = {
    "samples": "every timed sample (one step, or the mean of a block of steps), in order",
    "median": "median of the samples", "mean": "mean of the samples",
    "p10": "10th percentile of the samples", "p90": "90th percentile of the samples",
    "cv": "coefficient of variation of the samples (stdev / mean)", "n": "number of samples",
    "block": "steps timed together per sample (short steps are timed in blocks)",
    "cpu_samples": "process CPU time per sample, beside the wall time (CPU cells)",
    "cpu_median": "median of the CPU-time samples", "cpu_cv": "coefficient of variation of the CPU-time samples",
    "cpu_p10": "10th percentile of the CPU-time samples", "cpu_p90": "90th percentile of the CPU-time samples",
}


def _measurement(prefix: str, what: str, *, judged_median: bool) -> list[Metric]:
    """A timing.Measurement summary under ``prefix``: raw samples and their statistics."""
    return [_m(f"{prefix}.{field}", "" if field in ("cv", "n", "block", "cpu_cv") else "ms", "latency",
               f"{what}: {_MEASUREMENT_HELP[field]}", better="lower" if field in ("median", "cpu_median") else None,
               judged=judged_median and field == "median", timed=field in ("median", "cpu_median"),
               label="median ms" if field == "median" and judged_median else "",
               kind="numbers" if field.endswith("samples") else "number")
            for field in _MEASUREMENT]


METRICS: tuple[Metric, ...] = (
    # throughput and latency of a matrix cell (refbench run) or a data-parallel world (refbench ddp)
    _m("samples_per_s", "samples/s", "throughput", "samples per second at the median step time", better="higher",
       judged=True, timed=True, label="samples/s"),
    _m("ops_per_s", "ops/s", "throughput", "operations per second of a pytest-benchmark benchmark",
       better="higher", judged=True, timed=True, label="ops/s"),
    *_measurement("latency_ms", "step time", judged_median=True),
    _m("first_step_ms", "ms", "latency", "the first step alone: compilation, autotuning, lazy initialisation",
       better="lower"),
    _m("compile_s", "s", "latency", "compile time: the first step of a compiled backend, or a kernel's build",
       better="lower", judged=True),
    _m("compile_cache", "", "context", "whether compile_s came from a fresh compile cache or a shared (warm) one",
       kind="text"),
    _m("capture_s", "s", "latency", "seconds to capture the step in a CUDA graph"),
    _m("warmup_steps", "", "context", "untimed steps before the timed ones"),
    _m("steady", "", "context", "whether the warm-up ended because the step time had settled", kind="flag"),
    _m("threads", "", "context", "torch CPU threads of the process that measured", kind="number"),
    _m("flops_per_step", "FLOP", "throughput", "floating-point operations per step (torch.utils.flop_counter)"),
    _m("flops_counted_on", "", "context", "the device the FLOPs were counted on (meta, or the real one)"),
    _m("flops_skipped", "", "context", "why the FLOPs could not be counted"),
    _m("tflops", "TFLOP/s", "throughput", "achieved TFLOP/s (FLOPs per step over the median step time, or a "
       "kernel's FLOPs over its time)", better="higher", judged=True, timed=True),
    _m("peak_tflops", "TFLOP/s", "context", "the device's peak TFLOP/s for the cell's precision"),
    _m("mfu", "", "throughput", "model FLOPs utilisation: tflops / peak_tflops", better="higher"),
    _m("kernels_per_step", "", "latency", "CUDA kernels launched per step (torch.profiler)", better="lower"),
    _m("launch_calls_per_step", "", "latency", "CUDA launch calls per step (torch.profiler)", better="lower"),
    # memory
    _m("peak_allocated_bytes", "B", "memory", "CUDA: peak bytes allocated during the timed steps", better="lower"),
    _m("peak_reserved_bytes", "B", "memory", "CUDA: peak bytes reserved by the caching allocator", better="lower"),
    _m("peak_rss_delta_bytes", "B", "memory", "CPU: growth of the resident set during the timed steps",
       better="lower"),
    _m("first_step_peak_allocated_bytes", "B", "memory", "CUDA: peak bytes allocated by the first step",
       better="lower"),
    _m("first_step_peak_reserved_bytes", "B", "memory", "CUDA: peak bytes reserved by the first step",
       better="lower"),
    _m("first_step_peak_rss_delta_bytes", "B", "memory", "CPU: resident-set growth of the first step",
       better="lower"),
    _m("peak_mem_bytes", "B", "memory", "the peak memory of a record whatever its device (the DataFrame's name for "
       "the two above; ddp: the largest rank's)", better="lower", judged=True, label="memory"),
    _m("first_step_peak_mem_bytes", "B", "memory", "the first step's peak memory whatever its device (the "
       "DataFrame's name for the two first_step_peak_* above)", better="lower"),
    _m("peak_mem_bytes_per_rank", "B", "memory", "ddp: each rank's peak memory", kind="numbers"),
    _m("peak_mem_kind", "", "context", "ddp: which memory the peak is (allocated or rss_delta)", kind="text"),
    # energy
    _m("joules_per_sample", "J", "energy", "GPU energy per sample (NVML's energy counter)", better="lower"),
    _m("mean_watts", "W", "energy", "mean GPU power over the energy window"),
    _m("energy_window_s", "s", "energy", "seconds of steps the energy was measured over"),
    _m("energy_skipped", "", "energy", "why no energy figure could be had"),
    # correctness of the first step against float64
    _m("max_abs_err", "", "correctness", "largest absolute error against the float64 reference", better="lower"),
    _m("correctness.precision", "", "correctness", "the precision the cell's tolerance is that of", kind="text"),
    _m("correctness.tolerance", "", "correctness", "relative tolerance of that precision", kind="number"),
    _m("correctness.compared", "", "correctness", "whether outputs and gradients were compared (False: the step "
       "draws random numbers and was checked for NaN/Inf only)", kind="flag"),
    _m("correctness.max_rel_err", "", "correctness", "largest error relative to the reference's scale",
       better="lower"),
    _m("correctness.max_abs_err", "", "correctness", "largest absolute error against the reference", better="lower"),
    _m("correctness.worst", "", "correctness", "the tensor with the largest error over its tolerance", kind="text"),
    _m("correctness.note", "", "correctness", "what the check could not do, in words"),
    _m("correctness.matmul_precision", "", "correctness", "the matmul precision in force (ieee or tf32)"),
    _m("correctness.conv_precision", "", "correctness", "the convolution precision in force (ieee or tf32)"),
    _m("correctness.emulated", "", "correctness", "the precision whose rounding the float64 allowance emulated"),
    _m("correctness.allowance_multiple", "", "correctness", "the multiple of the emulated rounding error allowed"),
    _m("correctness.allowed", "", "correctness", "every tensor that needed the allowance: its error, tolerance, "
       "emulated error and the multiple used"),
    _m("correctness.eager.*", "", "correctness", "agreement with plain eager float32 on the same device, reported "
       "beside the verdict and never part of it"),
    _m("correctness.against", "", "correctness", "ddp: what the ranks' steps were compared with"),
    _m("correctness.ranks_agree", "", "correctness", "ddp: whether every rank ended with the same weights",
       kind="flag"),
    _m("correctness.steps", "", "correctness", "ddp: steps compared with single-process training"),
    # noise: how busy the machine was while a cell was timed
    _m("unstable", "", "noise", "the noise check's verdict: these figures should not be trusted alone", kind="flag"),
    _m("noise.reasons", "", "noise", "why the cell is unstable, in words"),
    _m("noise.kinds", "", "noise", "why the cell is unstable: varying, busy, stolen"),
    _m("noise.cv", "", "noise", "coefficient of variation of the step times", kind="number"),
    _m("noise.load_average_1m", "", "noise", "the machine's load average while the cell was timed"),
    _m("noise.other_processes_cores", "", "noise", "cores other processes kept busy while the cell was timed"),
    _m("noise.steal_share", "", "noise", "share of CPU time the hypervisor stole"),
    _m("noise.cpu_count", "", "noise", "CPU cores of the machine"),
    _m("noise.threads", "", "noise", "threads the cell used"),
    # where a cell's own time went
    _m("phases_s.*", "s", "cost", "seconds per phase of a cell: startup, setup, first step, check, warm-up, "
       "timed steps, extras"),
    _m("backend_notes", "", "context", "what the backend did to the model, in words"),
    _m("provenance.*", "", "context", "where the weights came from (pretrained or random, and why)"),
    # convergence (refbench converge): a seed's run, or a group's summary
    _m("accuracy", "", "accuracy", "classification accuracy on the target's split", better="higher"),
    _m("sequence_accuracy", "", "accuracy", "share of sequences decoded exactly", better="higher"),
    _m("token_accuracy", "", "accuracy", "share of tokens tagged right", better="higher"),
    _m("fid_fmnist_ratio", "", "accuracy", "FID-FMNIST of generated images over that of real ones", better="lower"),
    _m("r2", "", "accuracy", "coefficient of determination of a regressor", better="higher"),
    _m("cv_score", "", "accuracy", "the grid search's best cross-validation score", better="higher"),
    _m("final", "", "accuracy", "the target metric at the end of the run", kind="number"),
    _m("best", "", "accuracy", "the best value of the target metric during the run", kind="number"),
    _m("target", "", "context", "converge: the target's name (quick or full); the static check: the GPU the "
       "kernel was compiled for"),
    _m("target_metric", "", "context", "the metric the target is on", kind="text"),
    _m("threshold", "", "accuracy", "the target's value of that metric", kind="number"),
    _m("higher_is_better", "", "context", "whether the target metric is better higher"),
    _m("task", "", "context", "the workload's task (classification, generation, ...)"),
    _m("reached", "", "accuracy", "whether the target was reached (a summary: by the mean over the seeds)",
       kind="flag"),
    _m("time_to_target_s", "s", "accuracy", "training seconds until the target was reached", better="lower"),
    _m("epochs_to_target", "", "accuracy", "epochs until the target was reached", better="lower"),
    _m("steps_to_target", "", "accuracy", "optimizer steps until the target was reached", better="lower"),
    _m("seed", "", "context", "the seed of this run", kind="number"),
    _m("recipe", "", "context", "the recipe's name"),
    _m("recipe_settings.*", "", "context", "the recipe: optimizer, learning rate, batch size, epochs, "
       "normalisation, augmentation, source"),
    _m("budget.*", "", "context", "the target's budget: max_epochs, max_steps, stop_at_target (whether training "
       "ends once the threshold is met)"),
    _m("stopped_at_target", "", "accuracy", "whether the run ended early, at the first evaluation meeting the target"),
    _m("steps", "", "accuracy", "optimizer steps taken"),
    _m("dropped_batches", "", "accuracy", "batches dropped (a short last batch)"),
    _m("train_s", "s", "accuracy", "training seconds, evaluation excluded"),
    _m("steady_train_s", "s", "accuracy", "training seconds after the first step"),
    _m("eval_s", "s", "accuracy", "evaluation seconds"),
    _m("setup_s", "s", "cost", "seconds to build the model and load the data"),
    _m("wall_s", "s", "cost", "wall seconds of the whole run"),
    _m("first_step_s", "s", "latency", "seconds of the first training step"),
    _m("wall_cap_s", "s", "context", "seconds after which the run counts as hung"),
    _m("data_resident", "", "context", "whether the data set was held on the device"),
    _m("curve", "", "accuracy", "the target metric at each evaluation: step, epoch, train_s and metrics",
       kind="points"),
    _m("seeds.*", "", "accuracy", "a summary's seeds: n, seeds, values, mean, std, min, max, reached, "
       "time_to_target_s, asked"),
    _m("seeds.n", "", "accuracy", "a summary: the seeds its mean is over", kind="number"),
    _m("seeds.mean", "", "accuracy", "a summary: the mean of the target metric over the seeds (decides)",
       kind="number"),
    _m("seeds.std", "", "accuracy", "a summary: the standard deviation of the target metric over the seeds",
       kind="number"),
    _m("parity.*", "", "accuracy", "a backend's mean against its device's fp32 eager base on the same seeds: "
       "base, seeds, margin_rule, delta, margin, ok, flag, speedup, faster, note"),
    _m("parity.ok", "", "accuracy", "whether the backend's mean is within the margin of its base's", kind="flag"),
    _m("parity.base", "", "accuracy", "the base backend parity is against", kind="text"),
    _m("parity.delta", "", "accuracy", "the backend's mean less its base's", kind="number"),
    _m("parity.margin", "", "accuracy", "the difference parity allows", kind="number"),
    _m("as_written.*", "", "accuracy", "the document's model as written beside the fixed one: mean, fixed_mean, "
       "delta, time_to_target_s, fixed_time_to_target_s, reached, fixed_reached, seeds"),
    _m("trial", "", "context", "sweep: the Optuna trial's number"),
    _m("params.*", "", "context", "sweep: the recipe the trial tried"),
    _m("pruned", "", "context", "sweep: whether Optuna stopped the trial early"),
    # data-parallel scaling (refbench ddp)
    *_measurement("step_ms", "the world's step time", judged_median=False),
    _m("rank_step_ms", "ms", "scaling", "each rank's step time: rank, p50, p90", kind="list"),
    _m("per_rank_batch_size", "", "context", "samples per rank per step"),
    _m("baseline_samples_per_s", "samples/s", "scaling", "world size 1's samples/s in the same invocation"),
    _m("scaling_efficiency", "", "scaling", "samples/s over world size x world size 1's", better="higher"),
    _m("scaling_efficiency_note", "", "scaling", "why there is no efficiency"),
    _m("allreduce_ms_per_step", "ms", "scaling", "all-reduce time per step (torch.profiler)", better="lower"),
    _m("allreduce_share", "", "scaling", "share of the step spent in all-reduce, mean over ranks", better="lower"),
    _m("allreduce_share_per_rank", "", "scaling", "each rank's all-reduce share", kind="list"),
    _m("allreduce_source", "", "context", "which profiler events the all-reduce time came from"),
    _m("allreduce_note", "", "scaling", "why there is no all-reduce share (not profiled)"),
    _m("hosts", "", "context", "the hosts the ranks ran on"),
    _m("recorded_by", "", "context", "ddp on several nodes: which node writes the records"),
    _m("failed_ranks", "", "scaling", "ranks that failed"),
    _m("hung_ranks", "", "scaling", "ranks that hung"),
    _m("stopped_ranks", "", "scaling", "ranks stopped because another failed"),
    # kernels (refbench kernels): a sweep's cell
    _m("time_ms", "ms", "latency", "a kernel's median time", better="lower", judged=True),
    _m("first_call_s", "s", "latency", "a kernel's first call: compile and autotune"),
    _m("gbps", "GB/s", "throughput", "bytes moved per second", better="higher", judged=True, timed=True),
    _m("copy_gbps", "GB/s", "context", "the device's measured copy bandwidth (the memory roofline)"),
    _m("bytes_over_l2", "", "context", "the input's size over the L2 cache's"),
    _m("roofline_ms", "ms", "context", "the roofline's time for the problem"),
    _m("roofline_fraction", "", "throughput", "roofline time over the measured time", better="higher"),
    _m("matmul_peak_tflops", "TFLOP/s", "context", "the device's measured matmul peak for the precision"),
    # kernels: the static check of a compiled configuration
    _m("launch", "", "kernel", "the launch's index within the case"),
    _m("function", "", "kernel", "the Triton function compiled"),
    _m("config", "", "kernel", "the configuration compiled"),
    _m("vector_bytes", "B", "kernel", "the widest load the data's alignment allows"),
    _m("dot_precision", "", "kernel", "the precision of tl.dot"),
    _m("compile", "", "kernel", "the index of the distinct compile"),
    _m("registers", "", "kernel", "registers per thread (ptxas)"),
    _m("stack_bytes", "B", "kernel", "stack frame per thread (ptxas)"),
    _m("spill_bytes", "B", "kernel", "spill stores and loads per thread (ptxas)", better="lower"),
    _m("shared_bytes", "B", "kernel", "shared memory per block"),
    _m("blocks_per_sm", "", "kernel", "resident blocks per multiprocessor", better="higher"),
    _m("wgmma", "", "kernel", "whether the kernel uses Hopper's warp-group MMA"),
    _m("has_dot", "", "kernel", "whether the kernel has a tl.dot"),
    _m("pipelined", "", "kernel", "how the main loop's loads are pipelined"),
    _m("widest_load_bytes", "B", "kernel", "the widest global load"),
    _m("narrowest_main_load_bytes", "B", "kernel", "the narrowest load of the main loop"),
    _m("async_copies", "", "kernel", "whether loads are asynchronous copies"),
    # pytest-benchmark files read as records
    _m("rounds", "", "context", "pytest-benchmark: rounds timed", kind="number"),
    _m("iterations", "", "context", "pytest-benchmark: iterations per round"),
    _m("extra_info.*", "", "context", "pytest-benchmark: the benchmark's extra_info"),
)


def _index(metrics: Iterable[Metric]) -> tuple[dict[str, Metric], tuple[str, ...]]:
    exact: dict[str, Metric] = {}
    for metric in metrics:
        if metric.family not in FAMILIES:
            raise ValueError(f"metric {metric.name}: unknown family {metric.family!r}")
        if metric.name in exact:
            raise ValueError(f"metric {metric.name} is in the table twice")
        if metric.json_kind not in KINDS:
            raise ValueError(f"metric {metric.name}: unknown kind {metric.kind!r}")
        exact[metric.name] = metric
    groups = tuple(m.name[:-1] for m in metrics if m.group)
    return exact, groups


BY_NAME, _GROUP_PREFIXES = _index(METRICS)
JUDGED: tuple[Metric, ...] = tuple(m for m in METRICS if m.judged)


def get(name: str) -> Metric | None:
    """The table's entry for a flattened metric name (a group's entry for a field of a group)."""
    if name in BY_NAME:
        return BY_NAME[name]
    for prefix in _GROUP_PREFIXES:
        if name.startswith(prefix):
            return BY_NAME[prefix + "*"]
    return None


def heading(name: str) -> str:
    """A metric's column heading in tables."""
    metric = BY_NAME.get(name)
    return metric.heading if metric else name


def flatten(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``parent.child`` names; other values (lists included) as they are."""
    flat: dict[str, Any] = {}
    for name, value in metrics.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{name}."))
        else:
            flat[prefix + name] = value
    return flat


def unknown(metrics: Mapping[str, Any]) -> list[str]:
    """The flattened names in ``metrics`` that this table does not know."""
    return [name for name in flatten(metrics) if get(name) is None]


def columns(family: str | None = None) -> list[str]:
    """Exact (non-group) metric names, in the table's order, optionally of one family."""
    return [m.name for m in METRICS if not m.group and (family is None or m.family == family)]
