"""No false failures: the eager float32 cells of every workload pass their correctness check.

Every registered workload with a step (``hpo_rf_wine``, a grid search, has
none to check), train and infer, three seeds, on ``cpu`` and on
``cpu+channels-last`` where the model has a Conv2d. BatchNorm's backward at a
small batch, a ReLU within rounding of zero, a bias in front of BatchNorm
all move float32 past the tolerance somewhere in here; the emulated
allowance must cover each of them, from float64 runs only. Seed 0 of the
small workloads runs by default; the other seeds and the large models are
``slow``.
"""
import pytest
import torch

from refbench.harness.backends import SkipCell
from refbench.harness.correctness import CHECK_SEED, check_step, dropout_off
from refbench.harness.step import prepare
from refbench.models import get_workload, list_models

WORKLOADS = [name for name in list_models(exclude="test_*") if not get_workload(name).untimed_reason]
LARGE = {"resnet18_cifar", "vgg16_cifar", "vgg16_transfer"}
BATCH = 8


def cells(backend):
    for workload in WORKLOADS:
        for mode in ("train", "infer"):
            for seed in range(3):
                slow = workload in LARGE or seed > 0
                yield pytest.param(workload, backend, mode, seed, marks=[pytest.mark.slow] if slow else [],
                                   id=f"{workload}-{backend}-{mode}-{seed}")


def test_every_workload_with_a_step_is_here():
    assert len(WORKLOADS) == len(list_models(exclude="test_*")) - 1 == 18


@pytest.mark.parametrize("workload, backend, mode, seed", [*cells("cpu"), *cells("cpu+channels-last")])
def test_an_eager_float32_cell_passes(workload, backend, mode, seed):
    try:
        step = prepare(workload, backend, mode, BATCH, seed=seed)
    except SkipCell as exc:   # channels-last of a model without Conv2d layers
        pytest.skip(str(exc))
    torch.manual_seed(CHECK_SEED)
    with dropout_off(step.model):
        output = step()
    check = check_step(step, output)
    assert check.ok, (check.problems, check.metrics())
