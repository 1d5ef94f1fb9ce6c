import pytest
import torch
from torch import nn

from refbench.run.convergence import converge
from refbench.models import count_parameters, get_workload
from tests.models import workload_checks as checks

NAMES = ["cnn_small", "convnet3"]


@pytest.mark.parametrize("name, variant, parameters", [
    ("cnn_small", {}, 421_642),   # 320 + 18,496 + 64*7*7*128+128 + 1,290
    ("cnn_small", {"as_written": True}, 225_034),   # 320 + 18,496 + 64*5*5*128+128 + 1,290
    ("convnet3", {}, 241_546),    # 320 + 18,496 + 73,856 + 128*3*3*128+128 + 1,290
    ("convnet3", {"as_written": True}, 104_202),    # 320 + 18,496 + 73,856 + 128*3*3*10+10
])
def test_parameter_counts(name, variant, parameters):
    assert count_parameters(get_workload(name).make(**variant)) == parameters


@pytest.mark.parametrize("name", NAMES)
def test_logits_for_a_batch(name):
    workload = get_workload(name)
    out = workload.eval_step(workload.make(), workload.example_batch(5))
    assert out.shape == (5, 10) and out.dtype == torch.float32
    assert not torch.allclose(out.sum(1), torch.ones(5))


@pytest.mark.parametrize("name", NAMES)
def test_training_steps_lower_the_loss(name):
    checks.assert_steps_lower_the_loss(get_workload(name))



@pytest.mark.parametrize("name, flattened", [("cnn_small", 64 * 5 * 5), ("convnet3", 128 * 3 * 3)])
def test_as_written_flattens_what_its_layers_produce(name, flattened):
    """cnn_small unpadded: 1,600, not 14*14*64; convnet3: 1,152, not 64*8*8."""
    model = get_workload(name).make(as_written=True)
    features = model.features(torch.randn(2, 1, 28, 28))
    assert features.flatten(1).shape == (2, flattened) and model.classifier[1].in_features == flattened


def test_cnn_small_as_written_is_unpadded():
    model = get_workload("cnn_small").make(as_written=True)
    assert [m.padding for m in model.features if isinstance(m, nn.Conv2d)] == [(0, 0), (0, 0)]


def test_convnet3_as_written_has_one_linear_layer_and_a_relu_output():
    workload = get_workload("convnet3")
    model = workload.make(as_written=True)
    assert [type(m) for m in model.classifier] == [nn.Flatten, nn.Linear, nn.ReLU]
    assert (workload.eval_step(model, workload.example_batch(16)) >= 0).all()   # the ReLU clips the logits


@pytest.mark.parametrize("name", NAMES)
def test_as_written_trains(name):
    checks.assert_as_written_trains(get_workload(name))


@pytest.mark.slow  # over a minute of training on 2 CPU cores; CI's convergence suite keeps to 5 minutes
@pytest.mark.convergence
@pytest.mark.parametrize("name", NAMES)
def test_quick_target_on_fashion_mnist(name, real_data):
    """>= 87% test accuracy on real Fashion-MNIST within the quick budget."""
    result = real_data(converge, get_workload(name), "quick")
    assert result.dataset == "fashion-mnist"
    assert result.reached and result.best >= 0.87
