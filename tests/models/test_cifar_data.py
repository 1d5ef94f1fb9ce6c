"""The CIFAR workloads' real-data path: torchvision's on-disk CIFAR-10 layout, and its augmentation."""
import hashlib
import pickle

import numpy as np
import pytest
import torch
import torchvision

from refbench.models import get_workload
from refbench.models import _cifar
from refbench.models import data
from refbench.models.data import BadDataFile, DataMissing

IMAGES_PER_FILE = 20


@pytest.fixture
def cifar_root(tmp_path, monkeypatch):
    """A tiny cifar-10-batches-py in torchvision's pickle format; pixel (0, 0, 0) of image i is i % 256."""
    monkeypatch.setenv("REFBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("REFBENCH_DATA", raising=False)
    cifar = torchvision.datasets.CIFAR10
    folder = tmp_path / cifar.base_folder
    folder.mkdir()
    rng = np.random.default_rng(0)
    sums = {}
    for k, (name, _) in enumerate([*cifar.train_list, *cifar.test_list]):
        pixels = rng.integers(0, 256, (IMAGES_PER_FILE, 3 * 32 * 32), dtype=np.uint8)
        pixels[:, 0] = np.arange(k * IMAGES_PER_FILE, (k + 1) * IMAGES_PER_FILE) % 256
        blob = pickle.dumps({"data": pixels, "labels": [i % 10 for i in range(IMAGES_PER_FILE)]})
        (folder / name).write_bytes(blob)
        sums[name] = hashlib.md5(blob).hexdigest()
    meta = pickle.dumps({"label_names": [f"class{i}" for i in range(10)]})
    (folder / cifar.meta["filename"]).write_bytes(meta)
    # torchvision checks every file's MD5: the fake files' sums stand in for the real ones.
    monkeypatch.setattr(cifar, "train_list", [[n, sums[n]] for n, _ in cifar.train_list])
    monkeypatch.setattr(cifar, "test_list", [[n, sums[n]] for n, _ in cifar.test_list])
    monkeypatch.setattr(cifar, "meta", {**cifar.meta, "md5": hashlib.md5(meta).hexdigest()})
    return tmp_path


def test_data_load_reads_torchvisions_layout(cifar_root):
    train = data.load("cifar10", "train", data_dir=cifar_root, normalize=False)
    test = data.load("cifar10", "test", data_dir=cifar_root, normalize=False)
    assert (len(train), len(test)) == (5 * IMAGES_PER_FILE, IMAGES_PER_FILE)
    assert train.x.shape == (100, 3, 32, 32) and train.dataset == "cifar10"
    assert torch.equal(train.x[:, 0, 0, 0] * 255, torch.arange(100, dtype=torch.float32))  # NCHW, files in order
    assert train.origin == f"data directory {cifar_root}"


def test_a_truncated_batch_is_one_line_naming_it(cifar_root):
    path = cifar_root / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(BadDataFile) as info:
        data.load("cifar10", "train", data_dir=cifar_root)
    message = str(info.value)
    assert message.startswith(f"{path}: its MD5 is not torchvision's ") and "(truncated or altered)" in message
    assert "replace it with a good copy" in message and "\n" not in message


def test_a_missing_batch_is_named(cifar_root):
    (cifar_root / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(BadDataFile, match="test_batch: missing, while 6 other files of cifar10 are in"):
        data.load("cifar10", "train", data_dir=cifar_root)


def test_a_data_dir_without_cifar_says_what_was_expected(tmp_path):
    with pytest.raises(DataMissing, match=r"expected there: cifar-10-batches-py/ holding data_batch_1, .*batches.meta"):
        data.load("cifar10", "test", data_dir=tmp_path)


@pytest.mark.parametrize("name", ["vgg16_cifar", "resnet18_cifar"])
def test_cifar_workloads_train_on_the_real_format(cifar_root, name):
    workload = get_workload(name)
    train = workload.load_data("train", data_dir=cifar_root)
    assert train.dataset == "cifar10" and train.x.shape[1:] == workload.input_shape
    mean = torch.tensor(data.image_stats("cifar10")[0]).view(1, 3, 1, 1)
    assert abs((train.x * torch.tensor(data.image_stats("cifar10")[1]).view(1, 3, 1, 1) + mean).mean() - 0.5) < 0.05
    model = workload.make()
    optimizer = workload.configure_optimizer(model, workload.recipe("fast"))
    batch = next(workload.train_batches(train, 4, generator=torch.Generator().manual_seed(0)))
    assert batch[0].shape == (4, 3, 32, 32)
    assert torch.isfinite(workload.train_step(model, batch, optimizer))


def test_random_crop_flip_moves_and_mirrors_without_changing_content():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8) + 1
    out = _cifar.random_crop_flip(x, padding=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    for image, original in zip(out, x):
        inside = image[image != 0]  # padding shows as zeros; what remains is a shifted, maybe mirrored, window
        assert set(inside.tolist()) <= set(original.flatten().tolist())
        rows = [r[r != 0] for r in image[0] if (r != 0).any()]
        assert len(rows) >= 6 and all((r.diff().abs() == 1).all() and len(r) >= 6 for r in rows)


def test_crop_offsets_and_flips_cover_every_choice():
    x = torch.zeros(400, 1, 4, 4)
    x[:, :, 0, 0] = 1  # mark one corner: where it lands tells the offset and the flip
    out = _cifar.random_crop_flip(x, padding=1, generator=torch.Generator().manual_seed(0))
    landed = {tuple(torch.nonzero(o[0]).flatten().tolist()) for o in out}
    assert {(0, 0), (1, 1), (0, 3), (1, 2)} <= landed  # unshifted, shifted, mirrored, mirrored and shifted


def test_synthetic_cifar_is_not_augmented():
    workload = get_workload("resnet18_cifar")
    split = workload.load_data("test", dataset="synthetic-cifar10")
    g = torch.Generator().manual_seed(0)
    x, _ = next(workload.train_batches(split, 8, generator=g))
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(0))[:8]
    assert torch.equal(x, split.x[order])
