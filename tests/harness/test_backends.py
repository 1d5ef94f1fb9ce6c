"""Backend names compose with "+"; what cannot run is skipped with its reason, never dropped."""
import pytest
import torch

import tests.fixtures.faulty_workloads  # noqa: F401  registers the test workloads
from refbench.harness.backends import SkipCell, resolve
from refbench.run.matrix import Matrix, plan_cell
from refbench.run.settings import Settings
from refbench.run.throughput import measure_cell
from refbench.models import get_workload
from refbench.errors import RefbenchError


def test_names_compose_and_a_bare_modifier_means_cuda():
    backend = resolve("cuda+amp-bf16+compile")
    assert (backend.device, backend.modifiers) == ("cuda", ("amp-bf16", "compile"))
    assert backend.compiled and backend.precision == "bf16"
    assert resolve("tf32").device == "cuda" and resolve("tf32").precision == "tf32"
    assert resolve("cpu+compile").device == "cpu" and resolve("cpu").precision == "fp32"
    assert resolve("cpu+int8").precision == "int8"
    assert resolve("int8").device == "cpu"   # dynamic quantization's kernels are CPU kernels


@pytest.mark.parametrize("name, message", [
    ("gpu", "unknown backend 'gpu'"), ("cuda+fast", "unknown backend 'fast'"),
    ("cuda+", "empty part"), ("cuda+compile+compile", "twice"),
])
def test_malformed_names_are_user_errors(name, message):
    with pytest.raises(RefbenchError, match=message):
        resolve(name)


@pytest.mark.parametrize("backend, mode, workload, reason", [
    ("cuda", "train", "mlp", "no CUDA device"),
    ("cpu+int8", "train", "mlp", "inference only"),
    ("cpu+amp-bf16+amp-fp16", "infer", "mlp", "cannot be combined"),
    ("cpu+compile+compile-max-autotune", "infer", "mlp", "cannot be combined"),
    ("cpu+cudagraphs", "infer", "mlp", "CUDA graphs need a CUDA device"),
    ("cpu+triton", "infer", "lenet5", "interpreter"),
    ("cpu+sdpa", "infer", "mlp", "mlp has no attention=sdpa variant"),
    ("cpu", "train", "test_search", "hyper-parameter search"),
])
def test_static_skip_reasons(backend, mode, workload, reason):
    assert reason in resolve(backend).skip_reason(get_workload(workload), mode, cuda_available=False)


def test_gpu_combinations_pass_the_static_checks_where_a_gpu_exists():
    mlp = get_workload("mlp")
    for name in ("cuda", "tf32", "amp-bf16", "compile", "compile-max-autotune", "cudagraphs", "channels-last"):
        assert resolve(name).skip_reason(mlp, "train", cuda_available=True) is None
    assert "GradScaler" in resolve("cudagraphs+amp-fp16").skip_reason(mlp, "train", cuda_available=True)
    for name in ("int8", "cuda+int8", "cpu+int8+compile"):   # torchao's int8 runs on both, and compiles
        assert resolve(name).skip_reason(mlp, "infer", cuda_available=True) is None


def test_triton_swaps_lenet_convs_and_skips_a_model_without_any():
    backend = resolve("cuda+triton")
    model, notes = backend.transform_model(get_workload("lenet5").make())
    assert len(notes) == 2 and all("kernels.Conv2d" in line for line in notes)
    with pytest.raises(SkipCell, match="no softmax or Conv2d"):
        backend.transform_model(get_workload("mlp").make())


def test_channels_last_and_int8_skip_models_they_cannot_change():
    with pytest.raises(SkipCell, match="without Conv2d"):
        resolve("cuda+channels-last").transform_model(get_workload("mlp").make())
    with pytest.raises(SkipCell, match="without Linear"):
        resolve("cpu+int8").quantize(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3)))


def test_int8_measures_mlp_inference_within_the_int8_tolerance():
    outcome = measure_cell(plan_cell("mlp", "cpu+int8", "infer", 8), Settings(iters=2, max_warmup=2))
    assert outcome.status == "ok", outcome.error
    assert outcome.metrics["correctness"]["precision"] == "int8"
    assert 0 < outcome.metrics["correctness"]["max_rel_err"] <= 0.1


def test_cpu_compile_runs_and_records_its_compile_time():
    outcome = measure_cell(plan_cell("test_tiny", "cpu+compile", "infer", 4), Settings(iters=2, max_warmup=2))
    assert outcome.status == "ok", outcome.error
    assert outcome.metrics["compile_s"] > 0 and outcome.metrics["correctness"]["max_rel_err"] < 1e-4


def test_all_and_patterns_select_from_the_registry():
    assert {"mlp", "lenet5", "test_tiny"} <= set(Matrix(workloads=["all"], backends=["cpu"]).workload_names())
    assert Matrix(workloads=["lenet*"], backends=["cpu"]).workload_names() == ["lenet5"]
    with pytest.raises(RefbenchError, match="no registered workload matches"):
        Matrix(workloads=["zz*"], backends=["cpu"]).workload_names()
