"""The correctness check fails a wrong float32 path on every backend, and names what was wrong.

Each fault is in the model itself (tests.fixtures.fp32_faults): the float64
reference, the emulated float64 run and the eager float32 yardstick build
fresh models and carry it too, but it acts on float32 only, as a model's own
float32 path or a float32 kernel that lost accuracy does. Plain eager float32
shares every one of these faults, so the eager yardstick agrees with each
wrong answer; the verdict must not.
"""
import pytest
import torch

import tests.fixtures.faulty_workloads  # noqa: F401  registers test_batchnorm
from refbench.harness.correctness import ALLOWANCE_MULTIPLE, CHECK_SEED, TOLERANCES, check_step, dropout_off
from refbench.harness.step import prepare
from refbench.models import get_workload
from tests.fixtures.fp32_faults import Detached, GradientScale, OutputNoise, after_layer, wrong_in_float32


def first_step_check(step):
    """The first step and its check, as the runner does them."""
    torch.manual_seed(CHECK_SEED)
    with dropout_off(step.model):
        output = step()
    return check_step(step, output)


def build_with(monkeypatch, workload: str, insert) -> None:
    cls = type(get_workload(workload))
    build = cls.build
    monkeypatch.setattr(cls, "build", lambda self, **variant: insert(build(self, **variant)))


def kernel_regression(monkeypatch, workload: str) -> None:
    name = "linear" if workload == "mlp" else "conv2d"
    monkeypatch.setattr(torch.nn.functional, name, wrong_in_float32(getattr(torch.nn.functional, name)))


FAULTS = {
    "output noise 1e-3": (lambda mp, w: build_with(mp, w, after_layer(OutputNoise, -1)), "relative error"),
    "gradient x 1.01": (lambda mp, w: build_with(mp, w, after_layer(GradientScale, 0)), "relative error"),
    "detached branch": (lambda mp, w: build_with(mp, w, after_layer(Detached, 0)), "missing in the run under test"),
    "kernel regression": (kernel_regression, "relative error"),
}
CELLS = [("mlp", "cpu"), ("lenet5", "cpu"), ("cnn_small", "cpu"),
         ("lenet5", "cpu+channels-last"), ("cnn_small", "cpu+channels-last"),
         pytest.param("mlp", "cpu+compile", marks=pytest.mark.slow),
         pytest.param("cnn_small", "cpu+compile", marks=pytest.mark.slow)]


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("workload, backend", CELLS)
def test_a_fault_in_the_models_float32_path_fails_the_check(monkeypatch, workload, backend, fault):
    inject, problem = FAULTS[fault]
    inject(monkeypatch, workload)
    check = first_step_check(prepare(workload, backend, "train", 8))
    assert not check.ok, check.metrics()
    assert any(problem in p for p in check.problems), check.problems
    assert check.eager["agrees"], check.eager   # plain eager fp32 shares the fault: no yardstick for a verdict


@pytest.mark.parametrize("fault", ["output noise 1e-3", "kernel regression"])
@pytest.mark.parametrize("workload, backend", [("mlp", "cpu"), ("cnn_small", "cpu+channels-last")])
def test_an_inference_fault_fails_the_check(monkeypatch, workload, backend, fault):
    FAULTS[fault][0](monkeypatch, workload)
    check = first_step_check(prepare(workload, backend, "infer", 8))
    assert not check.ok and "output[0]: relative error" in check.problems[0], check.problems


def test_a_detached_branch_names_the_parameters_left_without_gradients(monkeypatch):
    build_with(monkeypatch, "mlp", after_layer(Detached, 0))
    (problem,) = first_step_check(prepare("mlp", "cpu", "train", 8)).problems
    assert problem == "missing in the run under test, present in the reference: grad:net.1.0.bias, grad:net.1.0.weight"


def test_a_gradient_the_reference_does_not_have_fails_too():
    step = prepare("mlp", "cpu", "train", 8)
    step.model.net[1].weight.requires_grad_(False)   # frozen in the run under test only
    step.optimizer.param_groups[0]["params"] = [p for p in step.model.parameters() if p.requires_grad]
    problems = first_step_check(step).problems
    assert any("missing in the run under test" in p and "grad:net.1.weight" in p for p in problems)


def test_a_kernel_regression_shows_in_the_error_against_float64_and_not_against_eager(monkeypatch):
    kernel_regression(monkeypatch, "lenet5")
    check = first_step_check(prepare("lenet5", "cpu", "train", 8))
    assert check.max_rel_err > 1e-4 and check.eager["max_rel_diff"] == 0.0
    assert check.eager["max_rel_err"] > 1e-4   # eager's own error says its float32 path is off


def test_an_ill_conditioned_step_passes_within_the_emulated_allowance_and_says_so():
    check = first_step_check(prepare("test_batchnorm", "cpu", "train", 2))
    assert check.ok and check.max_rel_err > TOLERANCES["fp32"], check.metrics()   # PyTorch's own rounding
    metrics = check.metrics()
    assert metrics["emulated"] == "fp32" and metrics["allowance_multiple"] == ALLOWANCE_MULTIPLE
    assert {a["tensor"] for a in metrics["allowed"]} >= {check.worst}
    for allowed in metrics["allowed"]:
        assert allowed["tolerance"] < allowed["rel_err"] <= allowed["multiple"] * allowed["emulated_rel_err"]


def test_a_fault_in_an_ill_conditioned_step_still_fails(monkeypatch):
    build_with(monkeypatch, "test_batchnorm", after_layer(GradientScale, 0))
    check = first_step_check(prepare("test_batchnorm", "cpu", "train", 2))
    assert not check.ok
    assert any("grad:0.0.weight" in p and "emulated in float64" in p for p in check.problems), check.problems


def test_the_record_says_which_precision_matmuls_and_convolutions_ran_in():
    check = first_step_check(prepare("lenet5", "cpu", "train", 8))
    assert check.metrics()["matmul_precision"] == "ieee" and check.metrics()["conv_precision"] == "ieee"
    assert set(check.metrics()["eager"]) == {"max_rel_diff", "worst", "max_rel_err", "agrees", "multiple"}

