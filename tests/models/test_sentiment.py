import pytest
import torch

from refbench.models import get_workload


def test_logits_and_padding_has_no_effect():
    model = get_workload("sentiment").make().eval()
    chars = torch.tensor([[5, 6, 7, 8, 9, 10], [11, 12, 0, 0, 0, 0]])
    logits = model(chars)
    assert logits.shape == (2, 2)
    assert torch.allclose(logits[1:], model(chars[1:, :2]), atol=1e-5)


def test_a_one_character_review_is_classified():
    model = get_workload("sentiment").make().eval()
    assert model(torch.tensor([[42]])).shape == (1, 2)


def test_overfits_a_tiny_batch():
    workload = get_workload("sentiment")
    model = workload.make()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    batch = {k: v[:16] for k, v in workload.example_batch(16).items()}
    batch["chars"] = batch["chars"][:, :30]
    for _ in range(40):
        workload.train_step(model, batch, optimizer)
    model.eval()
    assert torch.equal(workload.forward(model, batch).argmax(1), batch["label"])


def test_evaluate_on_the_real_split(real_data):
    workload = get_workload("sentiment")
    split = real_data(workload.load_data, "test")
    assert split.dataset == "chinese-sentiment"
    accuracy = workload.evaluate(workload.make(), split)["accuracy"]
    assert 0.2 < accuracy < 0.8   # untrained: near chance on balanced labels


@pytest.mark.slow  # over a minute of training on 2 CPU cores; CI's convergence suite keeps to 5 minutes
@pytest.mark.convergence
def test_quick_target_on_the_deduplicated_split(real_data):
    from refbench.run.convergence import converge

    result = real_data(converge, get_workload("sentiment"), "quick")
    assert result.reached and result.dataset == "chinese-sentiment", f"best {result.best:.3f}"
