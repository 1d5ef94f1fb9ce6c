"""The correctness check on a GPU: float64 reference on the device, TF32 behind the flags, the low precisions."""
import pytest
import torch

from refbench.harness import correctness, fp32_precision
from refbench.harness.rounding import Rounding
from refbench.harness.step import prepare
from tests.fixtures.fp32_faults import OutputNoise, after_layer
from tests.harness.test_step_check import build_with, first_step_check

pytestmark = pytest.mark.gpu


def rel(x, ref):
    return ((x.double() - ref).norm() / ref.norm()).item()


def test_a_gpu_cells_reference_runs_in_float64_on_the_gpu(monkeypatch):
    devices = []
    replay = correctness.replay_step

    def spy(*args, **kwargs):
        devices.append((torch.device(kwargs["device"]).type, kwargs.get("dtype", torch.float64)))
        return replay(*args, **kwargs)

    monkeypatch.setattr(correctness, "replay_step", spy)
    check = first_step_check(prepare("lenet5", "cuda", "train", 128))
    assert check.ok, check.problems
    assert ("cuda", torch.float64) in devices and all(device == "cuda" for device, _ in devices)


@pytest.mark.parametrize("backend, precision, matmul", [
    ("cuda", "fp32", "ieee"), ("tf32", "tf32", "tf32"), ("amp-bf16", "bf16", "ieee"), ("amp-fp16", "fp16", "ieee"),
])
@pytest.mark.parametrize("workload", ["mlp", "lenet5", "resnet18_cifar"])
def test_each_precision_passes_and_says_what_ran(workload, backend, precision, matmul):
    check = first_step_check(prepare(workload, backend, "train", 32))
    assert check.ok, (check.problems, check.metrics())
    assert check.precision == precision and check.metrics()["matmul_precision"] == matmul


def test_matmuls_in_tf32_behind_the_flags_fail_a_float32_cell_and_the_record_says_so():
    """The setting the backend's flags do not show: the new API alone, after the cell was configured."""
    step = prepare("mlp", "cuda", "train", 128)
    with fp32_precision.plain_fp32():
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        check = first_step_check(step)
    assert check.metrics()["matmul_precision"] == "tf32"
    assert not check.ok and "fp32 emulated in float64" in check.problems[0], check.metrics()


@pytest.mark.parametrize("backend", ["cuda", "cuda+compile"])
def test_a_fault_in_the_models_float32_path_fails_on_the_gpu(monkeypatch, backend):
    build_with(monkeypatch, "lenet5", after_layer(OutputNoise, -1))
    check = first_step_check(prepare("lenet5", backend, "train", 128))
    assert not check.ok and check.eager["agrees"], check.metrics()


@pytest.mark.parametrize("precision, run", [
    ("tf32", lambda a, b: a @ b),
    ("bf16", lambda a, b: torch.autocast("cuda", dtype=torch.bfloat16)(torch.matmul)(a, b)),
])
def test_the_emulated_low_precision_matmul_errs_as_much_as_the_gpus(precision, run):
    torch.manual_seed(0)
    a, b = torch.randn(256, 4096, device="cuda"), torch.randn(4096, 256, device="cuda")
    exact = a.double() @ b.double()
    with fp32_precision.plain_fp32():
        fp32_precision.set_tf32(precision == "tf32")
        real = run(a, b)
    with Rounding(precision):
        emulated = a.double() @ b.double()
    assert 1 / 3 < rel(real, exact) / rel(emulated, exact) < 3
