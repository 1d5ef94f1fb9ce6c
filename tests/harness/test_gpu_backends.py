"""Every GPU backend on small workloads, each cell in its own process (needs a CUDA device)."""
import pytest

from refbench.run.matrix import Matrix
from refbench.run.runner import run_matrix
from refbench.run.settings import Settings

pytestmark = pytest.mark.gpu

GPU_BACKENDS = ["cuda", "tf32", "amp-bf16", "amp-fp16", "compile", "cudagraphs", "compile+cudagraphs",
                "channels-last", "triton", "cuda+amp-bf16+compile"]


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu") / "r.jsonl"
    spec = Matrix(workloads=["mlp", "lenet5"], backends=GPU_BACKENDS, modes=["train", "infer"],
                  batch_sizes=[128], settings=Settings(iters=10, max_warmup=10, energy_s=0.2))
    return {(r["workload"], r["backend"], r["mode"]): r for r in run_matrix(spec, out)}


def test_every_cell_runs_or_says_why_not(records):
    for key, record in records.items():
        assert record["status"] in ("ok", "skipped"), (key, record["error"])
        if record["status"] == "skipped":
            assert record["error"]
    # Only the model-specific impossibilities are skipped.
    skipped = {key for key, r in records.items() if r["status"] == "skipped"}
    assert skipped == {("mlp", "channels-last", "train"), ("mlp", "channels-last", "infer"),
                       ("mlp", "triton", "train"), ("mlp", "triton", "infer")}


def test_gpu_cells_carry_launches_memory_flops_and_energy_or_its_reason(records):
    record = records[("lenet5", "cuda", "train")]
    metrics = record["metrics"]
    assert metrics["kernels_per_step"] > 10 and metrics["peak_allocated_bytes"] > 0
    assert metrics["first_step_peak_allocated_bytes"] > 0 and metrics["tflops"] > 0
    assert "joules_per_sample" in metrics or metrics["energy_skipped"]


def test_cudagraphs_replays_the_whole_step_with_one_launch(records):
    metrics = records[("mlp", "cudagraphs", "train")]["metrics"]
    assert metrics["launch_calls_per_step"] <= 2 and metrics["capture_s"] > 0
    assert metrics["correctness"]["compared"]


def test_amp_cells_are_judged_with_the_loose_tolerances(records):
    assert records[("lenet5", "amp-bf16", "train")]["metrics"]["correctness"]["precision"] == "bf16"
    assert records[("lenet5", "amp-fp16", "train")]["metrics"]["correctness"]["precision"] == "fp16"


def test_the_cudagraphs_backend_is_as_fast_as_a_hand_captured_graph():
    from refbench.run.validate import CUDAGRAPH_GOAL, cudagraph_comparison

    result = cudagraph_comparison("mlp", 128, iters=20)
    assert result["speed_vs_hand"] >= CUDAGRAPH_GOAL, result
