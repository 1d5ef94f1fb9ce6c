"""The correctness check can fail on every backend: faults injected into the run under test are caught.

Each fault is put into the prepared Step's model only (a hook), so the fp64
reference and the fp32 yardstick, which build fresh models, do not have it:
exactly what a broken backend transformation, kernel or compiler looks like.
"""
import pytest
import torch
from torch import nn

import tests.fixtures.faulty_workloads  # noqa: F401  registers test_batchnorm
from refbench.harness.correctness import CHECK_SEED, TOLERANCES, check_step, dropout_off
from refbench.harness.step import prepare


def _first_step_check(step):
    torch.manual_seed(CHECK_SEED)
    with dropout_off(step.model):
        output = step()
    return check_step(step, output)


def _layers(model):
    return [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def scaled_gradient(model):
    _layers(model)[0].weight.register_hook(lambda grad: grad * 1.01)


def detached_layer(model):
    _layers(model)[0].register_forward_hook(lambda module, args, out: out.detach())


def fp16_round_trip(model):
    _layers(model)[0].register_forward_hook(lambda module, args, out: out.half().float())


def output_noise(model):
    generator = torch.Generator().manual_seed(7)
    _layers(model)[-1].register_forward_hook(
        lambda module, args, out: out * (1 + 1e-3 * torch.randn(out.shape, generator=generator)))


CASES = [("mlp", "cpu"), ("lenet5", "cpu"), ("cnn_small", "cpu"),
         ("lenet5", "cpu+channels-last"), ("cnn_small", "cpu+channels-last")]


@pytest.mark.parametrize("fault, problem", [
    (scaled_gradient, "relative error"), (detached_layer, "missing in the run under test"),
    (fp16_round_trip, "relative error"), (output_noise, "relative error"),
])
@pytest.mark.parametrize("workload, backend", CASES)
def test_an_injected_fault_fails_the_check(workload, backend, fault, problem):
    step = prepare(workload, backend, "train", 8)
    fault(step.model)
    check = _first_step_check(step)
    assert not check.ok, check.metrics()
    assert any(problem in p for p in check.problems), check.problems


def test_a_detached_layer_names_the_parameters_left_without_gradients():
    step = prepare("mlp", "cpu", "train", 8)
    detached_layer(step.model)
    (problem,) = _first_step_check(step).problems
    assert problem == "missing in the run under test, present in the reference: grad:net.1.bias, grad:net.1.weight"


def test_a_gradient_the_reference_does_not_have_fails_too():
    step = prepare("mlp", "cpu", "train", 8)
    step.model.net[1].weight.requires_grad_(False)   # frozen in the run under test only
    step.optimizer.param_groups[0]["params"] = [p for p in step.model.parameters() if p.requires_grad]
    problems = _first_step_check(step).problems
    assert any("missing in the run under test" in p and "grad:net.1.weight" in p for p in problems)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("workload", ["mlp", "lenet5", "cnn_small"])
def test_eager_fp32_passes_over_seeds(workload, seed):
    check = _first_step_check(prepare(workload, "cpu", "train", 8, seed=seed))
    assert check.ok and check.compared, check.problems
    assert check.max_rel_err < 1e-5


def test_an_ill_conditioned_plain_step_passes_on_its_independent_fp32_run_and_a_fault_in_it_fails():
    step = prepare("test_batchnorm", "cpu", "train", 2)
    check = _first_step_check(step)
    assert check.ok and check.max_rel_err > TOLERANCES["fp32"], check.metrics()   # PyTorch's own rounding
    faulty = prepare("test_batchnorm", "cpu", "train", 2)
    scaled_gradient(faulty.model)
    assert not _first_step_check(faulty).ok
