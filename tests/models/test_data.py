import pytest
import torch

from refbench.errors import RefbenchError
from refbench.models import data
from refbench.models.data import DataMissing


def test_fashion_mnist_is_the_real_data_set(real_data):
    train = real_data(data.load, "fashion-mnist", "train", normalize=False)
    test = real_data(data.load, "fashion-mnist", "test", normalize=False)
    assert (len(train), len(test)) == (60000, 10000)
    assert train.x.shape == (60000, 1, 28, 28) and train.x.dtype == torch.float32
    assert sorted(train.y.unique().tolist()) == list(range(10))
    assert train.x.mean().item() == pytest.approx(0.2860, abs=0.001)
    assert train.dataset == "fashion-mnist"


def test_normalised_split_has_zero_mean_unit_std(real_data):
    train = real_data(data.load, "fashion-mnist", "train")
    assert train.x.mean().item() == pytest.approx(0.0, abs=0.01)
    assert train.x.std().item() == pytest.approx(1.0, abs=0.01)


def test_missing_data_set_names_places_and_remedy(tmp_path, monkeypatch):
    monkeypatch.setenv("REFBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("REFBENCH_DATA", raising=False)
    with pytest.raises(DataMissing) as info:
        data.load("cifar10", "train", download=False)
    message = str(info.value)
    assert message.startswith(f"data set cifar10 not found (looked in: {tmp_path / 'cache' / 'data'}")
    assert "to get it: torchvision's download where there is a network" in message
    assert "--data-dir" in message and "\n" not in message


def test_unknown_data_set_and_split():
    with pytest.raises(RefbenchError, match="unknown data set 'imagenet'"):
        data.load("imagenet", "train")
    with pytest.raises(RefbenchError, match="unknown split 'val'"):
        data.load("synthetic-cifar10", "val")


def test_synthetic_cifar_is_deterministic():
    a, b = data.load("synthetic-cifar10", "test"), data.load("synthetic-cifar10", "test")
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert a.x.shape == (2000, 3, 32, 32) and a.dataset == "synthetic-cifar10"


def test_batches_cover_the_split_once():
    split = data.TensorSplit(torch.arange(10.0).view(10, 1), torch.arange(10), "toy", "test")
    seen = torch.cat([y for _, y in data.batches(split, 3, shuffle=True, generator=torch.Generator().manual_seed(0))])
    assert sorted(seen.tolist()) == list(range(10))
    assert [len(y) for _, y in data.batches(split, 3, drop_last=True)] == [3, 3, 3]


def test_describe_sources_lists_every_source():
    rows = {row["name"]: row for row in data.describe_sources()}
    assert {"fashion-mnist", "mnist", "cifar10", "synthetic-cifar10"} <= set(rows)
    assert rows["synthetic-cifar10"]["status"] == "found"
