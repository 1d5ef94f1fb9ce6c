import pytest
import torch

from reference_models import count_parameters, get_workload


@pytest.mark.parametrize("name, variant, parameters", [
    ("mlp", {}, 109_386),          # 784*128+128 + 128*64+64 + 64*10+10
    ("lenet5", {}, 61_706),        # 156 + 2,416 + 48,120 + 10,164 + 850
    ("lenet5", {"activation": "tanh"}, 61_706),
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


@pytest.mark.parametrize("name", ["mlp", "lenet5"])
def test_recipes_targets_and_notes(name):
    workload = get_workload(name)
    assert {"document", "fast"} <= set(workload.recipes)
    assert {"quick", "full"} <= set(workload.targets)
    assert workload.notes and workload.source.startswith("document")


def test_document_recipes_are_the_documents():
    mlp, lenet = get_workload("mlp").recipe("document"), get_workload("lenet5").recipe("document")
    assert (mlp.optimizer, mlp.lr, mlp.momentum, mlp.batch_size, mlp.epochs) == ("sgd", 1e-3, 0.9, 64, 10)
    assert (lenet.optimizer, lenet.lr, lenet.batch_size, lenet.epochs) == ("adam", 1e-2, 128, 20)
