import hashlib
import pickle

import numpy as np
import pytest
import torch
import torchvision

from reference_models import RefbenchError, data
from reference_models.data import _images


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
    with pytest.raises(RefbenchError) as info:
        data.load("mnist", "train", data_dir=tmp_path / "mine", download=False)
    message = str(info.value)
    assert "data set mnist not found" in message
    assert str(tmp_path / "mine" / "MNIST" / "raw") in message
    assert str(tmp_path / "cache") in message
    assert "--data-dir" in message and "\n" not in message


def test_user_directory_comes_first(tmp_path, monkeypatch):
    """A CIFAR-10 root in torchvision's pickle layout under --data-dir is what gets loaded.

    torchvision checks each file's MD5, so the fake files' sums replace the real ones.
    """
    monkeypatch.setenv("REFBENCH_CACHE", str(tmp_path / "cache"))
    cifar = torchvision.datasets.CIFAR10
    folder = tmp_path / cifar.base_folder
    folder.mkdir()
    rng = np.random.default_rng(0)
    sums = {}
    for name in _images.IMAGE_SETS["cifar10"].raw_files:
        if name == "batches.meta":
            payload = {"label_names": [f"c{i}" for i in range(10)]}
        else:
            payload = {"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8), "labels": list(range(10)) * 2}
        blob = pickle.dumps(payload)
        (folder / name).write_bytes(blob)
        sums[name] = hashlib.md5(blob).hexdigest()
    monkeypatch.setattr(cifar, "train_list", [[n, sums[n]] for n, _ in cifar.train_list])
    monkeypatch.setattr(cifar, "test_list", [[n, sums[n]] for n, _ in cifar.test_list])
    monkeypatch.setattr(cifar, "meta", {**cifar.meta, "md5": sums["batches.meta"]})
    train = data.load("cifar10", "train", data_dir=tmp_path, download=False)
    assert train.x.shape == (100, 3, 32, 32) and train.dataset == "cifar10"
    assert train.origin == f"user directory {tmp_path}"


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
