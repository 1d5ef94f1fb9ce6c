"""What every registered workload must do, generated for each one (a workload added to the registry is tested here
without a line of its own): build, one train and one eval step on the CPU, the same losses under the same seed,
its notes and recipes, and the parameter count ``refbench list --json`` shows."""
import pytest
import torch

from refbench.models import count_parameters, get_workload, list_models
from tests.models import workload_checks as checks

# Models whose CPU steps take seconds each at the batch below: their step tests run under the slow marker.
HEAVY = {"vgg16_transfer", "vgg16_cifar", "resnet18_cifar"}
NAMES = list_models(exclude="test_*")   # not the harness tests' own workloads
BATCH = 4


def _each(names=None):
    return [pytest.param(name, marks=pytest.mark.slow) if name in HEAVY else name for name in names or NAMES]


def _stepped():
    """Workloads with a step to run: a hyper-parameter search has none (its ``untimed_reason`` says why)."""
    return [name for name in NAMES if get_workload(name).untimed_reason is None]


@pytest.mark.parametrize("name", _each())
def test_builds_its_default_and_as_written_models(name):
    workload = get_workload(name)
    assert isinstance(workload.make(), torch.nn.Module)
    if "as_written" in workload.variants:
        assert isinstance(workload.make(as_written=True), torch.nn.Module)


@pytest.mark.parametrize("name", _each(_stepped()))
def test_one_train_and_one_eval_step_on_the_cpu(name):
    workload = get_workload(name)
    torch.manual_seed(0)
    model = workload.make()
    batch = workload.example_batch(BATCH)
    loss = workload.train_step(model, batch, workload.configure_optimizer(model, workload.recipe("fast")))
    assert torch.isfinite(loss).all(), f"{name}: train step loss {loss}"
    with torch.no_grad():
        out = workload.eval_step(model, batch)
    tensors = [t for t in (out if isinstance(out, (tuple, list)) else [out]) if isinstance(t, torch.Tensor)]
    assert tensors and all(torch.isfinite(t.float()).all() for t in tensors), f"{name}: eval step not finite"


@pytest.mark.parametrize("name", _each(_stepped()))
def test_the_same_seed_gives_the_same_losses(name):
    checks.assert_same_seed_same_losses(get_workload(name), batch_size=BATCH)


@pytest.mark.parametrize("name", NAMES)
def test_notes_recipes_and_targets(name):
    checks.assert_documented(get_workload(name))


@pytest.mark.parametrize("name", _each())
def test_the_parameter_count_on_the_meta_device_is_the_real_one(name):
    workload = get_workload(name)
    assert workload.parameter_count() == count_parameters(workload.make())
