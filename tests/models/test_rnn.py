import pytest
import torch
from torch import nn

from refbench.run.convergence import converge
from refbench.models import count_parameters, get_workload
from tests.models import workload_checks as checks

NAMES = ["rnn_rows", "lstm_rows", "gru_rows"]


def recurrent_parameters(gates: int, inputs: int = 28, hidden: int = 128, layers: int = 2) -> int:
    """Each layer: gates x (input weights + hidden weights + two biases)."""
    first = gates * (hidden * inputs + hidden * hidden + 2 * hidden)
    deeper = gates * (hidden * hidden + hidden * hidden + 2 * hidden)
    return first + (layers - 1) * deeper + hidden * 10 + 10


@pytest.mark.parametrize("name, gates, parameters", [
    ("rnn_rows", 1, 54_538), ("lstm_rows", 4, 214_282), ("gru_rows", 3, 161_034),
])
def test_parameter_counts(name, gates, parameters):
    assert recurrent_parameters(gates) == parameters
    assert count_parameters(get_workload(name).make()) == parameters


def test_an_image_is_read_row_by_row():
    """The recurrent layer receives the image's 28 rows as its 28 time steps."""
    model = get_workload("lstm_rows").make()
    x = torch.randn(2, 1, 28, 28)
    seen = []
    model.rnn.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    model(x)
    assert torch.equal(seen[0], x[:, 0])
    assert isinstance(model.rnn, nn.LSTM) and model.rnn.batch_first


@pytest.mark.parametrize("name", NAMES)
def test_logits_for_a_batch(name):
    workload = get_workload(name)
    assert workload.eval_step(workload.make(), workload.example_batch(3)).shape == (3, 10)


@pytest.mark.parametrize("name", NAMES)
def test_training_steps_lower_the_loss(name):
    checks.assert_steps_lower_the_loss(get_workload(name))



@pytest.mark.convergence
def test_lstm_quick_target_on_fashion_mnist(real_data):
    """>= 80% test accuracy on real Fashion-MNIST within the quick budget."""
    result = real_data(converge, get_workload("lstm_rows"), "quick")
    assert result.dataset == "fashion-mnist"
    assert result.reached and result.best >= 0.80
