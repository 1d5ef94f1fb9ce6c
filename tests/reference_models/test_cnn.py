import pytest
import torch

from bench.convergence import converge
from reference_models import count_parameters, get_workload
from tests.reference_models import workload_checks as checks

NAMES = ["cnn_small", "convnet3"]


@pytest.mark.parametrize("name, parameters", [
    ("cnn_small", 421_642),   # 320 + 18,496 + 64*7*7*128+128 + 1,290
    ("convnet3", 241_546),    # 320 + 18,496 + 73,856 + 128*3*3*128+128 + 1,290
])
def test_parameter_counts(name, parameters):
    assert count_parameters(get_workload(name).make()) == parameters


@pytest.mark.parametrize("name", NAMES)
def test_logits_for_a_batch(name):
    workload = get_workload(name)
    out = workload.eval_step(workload.make(), workload.example_batch(5))
    assert out.shape == (5, 10) and out.dtype == torch.float32
    assert not torch.allclose(out.sum(1), torch.ones(5))


@pytest.mark.parametrize("name", NAMES)
def test_training_steps_lower_the_loss(name):
    checks.assert_steps_lower_the_loss(get_workload(name))


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_losses(name):
    checks.assert_same_seed_same_losses(get_workload(name))


@pytest.mark.parametrize("name", NAMES)
def test_documented(name):
    checks.assert_documented(get_workload(name))


def test_convnet3_note_names_the_fixed_flatten_size():
    assert any("1,152" in note for note in get_workload("convnet3").notes)


@pytest.mark.convergence
@pytest.mark.parametrize("name", NAMES)
def test_quick_target_on_fashion_mnist(name, real_data):
    """>= 87% test accuracy on real Fashion-MNIST within the quick budget."""
    result = real_data(converge, get_workload(name), "quick")
    assert result.dataset == "fashion-mnist"
    assert result.reached and result.best >= 0.87
