import math

import pytest
import torch
from torch import nn

from refbench.models import count_parameters, get_workload
from tests.models import workload_checks as checks


@pytest.mark.parametrize("name, variant, parameters", [
    ("mlp", {}, 109_386),          # 784*128+128 + 128*64+64 + 64*10+10
    ("mlp", {"as_written": True}, 109_386),
    ("lenet5", {}, 61_706),        # 156 + 2,416 + 48,120 + 10,164 + 850
    ("lenet5", {"activation": "tanh"}, 61_706),
    ("lenet5", {"as_written": True}, 44_426),   # 156 + 2,416 + 256*120+120 + 10,164 + 850
])
def test_parameter_counts(name, variant, parameters):
    assert count_parameters(get_workload(name).make(**variant)) == parameters


@pytest.mark.parametrize("name", ["mlp", "lenet5"])
def test_output_shape_and_logits(name):
    workload = get_workload(name)
    x, y = workload.example_batch(8)
    out = workload.eval_step(workload.make(), (x, y))
    assert out.shape == (8, 10)
    assert not torch.allclose(out.softmax(1).sum(1), out.sum(1))  # logits, not probabilities


@pytest.mark.parametrize("name, variant", [("mlp", {}), ("lenet5", {"activation": "sigmoid"}), ("lenet5", {})])
def test_a_training_step_lowers_the_loss_on_its_batch(name, variant):
    workload = get_workload(name)
    model = workload.make(**variant)
    optimizer = workload.configure_optimizer(model, workload.recipe("fast"))
    batch = workload.example_batch(32)
    before = workload.loss(model, batch).item()
    for _ in range(5):
        workload.train_step(model, batch, optimizer)
    assert workload.loss(model, batch).item() < before


def test_example_batch_is_deterministic():
    a, b = get_workload("lenet5").example_batch(4), get_workload("lenet5").example_batch(4)
    assert all(torch.equal(u, v) for u, v in zip(a, b))


def test_document_recipes_are_the_documents():
    mlp, lenet = get_workload("mlp").recipe("document"), get_workload("lenet5").recipe("document")
    assert (mlp.optimizer, mlp.lr, mlp.momentum, mlp.batch_size, mlp.epochs, mlp.normalize) == (
        "sgd", 1e-3, 0.9, 64, 10, "half")
    assert (lenet.optimizer, lenet.lr, lenet.batch_size, lenet.epochs, lenet.normalize) == (
        "adam", 1e-2, 128, 20, "none")


def test_mlp_as_written_ends_in_the_documents_softmax():
    workload = get_workload("mlp")
    fixed, as_written = workload.make(), workload.make(as_written=True)
    assert [type(m) for m in as_written.net] == [type(m) for m in fixed.net] + [nn.Softmax]
    batch = workload.example_batch(6)
    probabilities = workload.eval_step(as_written.eval(), batch)
    assert torch.allclose(probabilities.sum(1), torch.ones(6)) and (probabilities >= 0).all()


def test_mlp_double_softmax_keeps_the_loss_above_its_floor():
    """Cross-entropy of probabilities is at least log(9 + e) - 1 = 1.461 (a one-hot output); logits reach ~0."""
    workload = get_workload("mlp")
    batch = workload.example_batch(6)
    losses = {}
    for as_written in (False, True):
        model = workload.make(as_written=as_written)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        losses[as_written] = [workload.train_step(model, batch, optimizer).item() for _ in range(40)][-1]
    floor = math.log(9 + math.e) - 1
    assert losses[False] < 0.01 and floor - 1e-4 <= losses[True] < floor + 0.01


def test_lenet5_as_written_is_the_first_listing():
    """Unpadded convolutions, a 16x4x4 map into fc1, three linear layers with nothing between them."""
    model = get_workload("lenet5").make(as_written=True)
    assert [m.padding for m in model.features if isinstance(m, nn.Conv2d)] == [(0, 0), (0, 0)]
    assert model.features(torch.randn(2, 1, 28, 28)).shape == (2, 16, 4, 4)
    assert [type(m) for m in model.classifier] == [nn.Flatten, nn.Linear, nn.Linear, nn.Linear]
    assert model.classifier[1].in_features == 256
    fixed = get_workload("lenet5").make()
    assert fixed.features(torch.randn(2, 1, 28, 28)).shape == (2, 16, 5, 5)
    assert sum(isinstance(m, nn.ReLU) for m in fixed.classifier) == 2


@pytest.mark.parametrize("name, variant", [("mlp", {}), ("lenet5", {}), ("lenet5", {"activation": "tanh"})])
def test_as_written_trains(name, variant):
    checks.assert_as_written_trains(get_workload(name), variant)
