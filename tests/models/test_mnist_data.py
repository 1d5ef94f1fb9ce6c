"""MNIST and Fashion-MNIST from disk: where they are looked for, the stand-in, and every bad file named.

The files are tiny idx sets written by the tests; the system package's
directory is pointed at a test folder, and downloads are off.
"""
import dataclasses
import gzip
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from refbench.cli import main
from refbench.models import get_workload, list_models
from refbench.errors import RefbenchError
from refbench.models import data
from refbench.models.data import BadDataFile, DataMissing, _images
from tests.models.idx_files import FILES, idx_bytes, write_set

STAND_IN = "fashion-mnist (stand-in for mnist)"


@pytest.fixture
def place(tmp_path, monkeypatch):
    """An empty cache, no download, no REFBENCH_DATA, and the system package's files in tmp_path/system."""
    monkeypatch.setenv("REFBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("REFBENCH_OFFLINE", "1")
    monkeypatch.delenv("REFBENCH_DATA", raising=False)
    fashion = _images.IMAGE_SETS["fashion-mnist"]
    # The tiny sets written here are not the published ones: no published sums to check them against.
    monkeypatch.setitem(_images.IMAGE_SETS, "fashion-mnist",
                        dataclasses.replace(fashion, system_dir=str(tmp_path / "system"), md5=None))
    monkeypatch.setitem(_images.IMAGE_SETS, "mnist", dataclasses.replace(_images.IMAGE_SETS["mnist"], md5=None))
    return tmp_path


@pytest.fixture
def image_sources_only(monkeypatch):
    """`refbench data` lists only the image sets (the corpora take seconds to read)."""
    monkeypatch.setattr(data, "_SOURCES", {n: data._SOURCES[n] for n in ("mnist", "fashion-mnist", "cifar10")})


def one_line(exc) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# ----- MNIST found -----

def test_mnist_in_torchvisions_layout_under_the_data_dir(place):
    root = place / "data"
    write_set(root / "MNIST" / "raw")
    split = data.load("mnist", "train", data_dir=root, normalize=False)
    assert split.dataset == "mnist" and split.origin == f"data directory {root}"
    assert split.x.shape == (20, 1, 28, 28) and split.x.dtype == torch.float32
    assert torch.equal(split.x[:, 0, 0, 0] * 255, torch.arange(20.0))   # images in file order
    assert torch.equal(split.y, torch.arange(20) % 10)


def test_gzipped_idx_files_in_a_folder_named_mnist_through_refbench_data(place, monkeypatch):
    write_set(place / "data" / "mnist", gz=True)
    monkeypatch.setenv("REFBENCH_DATA", str(place / "data"))
    split = data.load("mnist", "test")
    assert split.dataset == "mnist" and len(split) == 10
    (mean,), (std,) = data.image_stats("mnist")
    assert split.x[3, 0, 0, 0].item() == pytest.approx((3 / 255 - mean) / std, abs=1e-6)   # MNIST's statistics


def test_the_workloads_whose_documents_train_on_mnist_declare_it():
    """Documents 000 (LeNet-5) and 004 (MLP) load torchvision's MNIST; 002 and 003 name no data set,
    and the GANs are judged on Fashion-MNIST."""
    declared = {name: get_workload(name).dataset for name in list_models(exclude="test_*")}
    assert sorted(n for n, d in declared.items() if d == "mnist") == ["lenet5", "mlp"]
    for name in ("cnn_small", "convnet3", "rnn_rows", "lstm_rows", "gru_rows", "dcgan", "wgan_gp"):
        assert declared[name] == "fashion-mnist"


@pytest.mark.parametrize("name", ["mlp", "lenet5"])
def test_mnist_workloads_train_on_mnist_when_it_is_there(place, name):
    root = place / "data"
    write_set(root / "MNIST" / "raw")
    write_set(root / "FashionMNIST" / "raw", brightness=200)
    workload = get_workload(name)
    split = workload.load_data("train", data_dir=root)
    assert split.dataset == "mnist"
    model = workload.make()
    optimizer = workload.configure_optimizer(model, workload.recipe("fast"))
    batch = next(workload.train_batches(split, 8, generator=torch.Generator().manual_seed(0)))
    assert torch.isfinite(workload.train_step(model, batch, optimizer))


# ----- the stand-in -----

def test_without_mnist_fashion_mnist_stands_in_and_says_so(place):
    write_set(place / "system", gz=True, brightness=100)
    split = get_workload("lenet5").load_data("train")
    assert split.dataset == STAND_IN
    assert split.origin == f"system package files {place / 'system'}"
    (mean,), (std,) = data.image_stats("fashion-mnist")        # normalised as the set really used
    assert split.x[5, 0, 1, 1].item() == pytest.approx((100 / 255 - mean) / std, abs=1e-6)
    assert data.load("mnist", "test").origin == f"cache {_images.cache_root()}"   # unpacked once


def test_a_data_dir_with_only_fashion_mnist_stands_in_from_there(place):
    root = place / "data"
    write_set(root / "fashion-mnist")
    split = data.load("mnist", "test", data_dir=root)
    assert split.dataset == STAND_IN and split.origin == f"data directory {root}"


def test_mnist_workloads_targets_train_on_fashion_mnist_mnist_or_not(place):
    """Their thresholds are Fashion-MNIST figures: a converge record names Fashion-MNIST, never a stand-in."""
    from refbench.run.convergence import converge
    from refbench.models import Recipe

    write_set(place / "data" / "FashionMNIST" / "raw", brightness=200)
    for name in ("mlp", "lenet5"):
        assert {t.dataset for t in get_workload(name).targets.values()} == {"fashion-mnist"}
        run = converge(name, "quick", recipe=Recipe(batch_size=4), max_steps=2, data_dir=place / "data")
        assert run.dataset == "fashion-mnist" and run.status == "ok"
    write_set(place / "data" / "MNIST" / "raw")
    run = converge("mlp", "full", recipe=Recipe(batch_size=4), max_steps=2, data_dir=place / "data")
    assert run.dataset == "fashion-mnist"


def test_a_bad_mnist_is_an_error_not_a_reason_to_stand_in(place):
    root = place / "data"
    images = write_set(root / "MNIST" / "raw") / FILES["train"][0]
    images.write_bytes(images.read_bytes()[:-100])
    write_set(root / "FashionMNIST" / "raw")
    with pytest.raises(BadDataFile, match="truncated"):
        data.load("mnist", "train", data_dir=root)


# ----- an explicit data directory is where the data must be -----

def test_a_data_dir_without_the_data_is_an_error_saying_what_was_expected(place):
    write_set(_images.cache_root() / "FashionMNIST" / "raw")          # the cache has it: not used
    (place / "data").mkdir()
    with pytest.raises(DataMissing) as info:
        data.load("fashion-mnist", "train", data_dir=place / "data")
    message = one_line(info)
    assert f"data set fashion-mnist is not in {place / 'data'} (given by --data-dir)" in message
    assert "expected there: FashionMNIST/raw/ (torchvision's layout) or fashion-mnist/ holding " \
           "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte" in message


def test_refbench_data_without_mnist_or_its_stand_in_names_both(place, monkeypatch):
    (place / "data").mkdir()
    monkeypatch.setenv("REFBENCH_DATA", str(place / "data"))
    with pytest.raises(DataMissing) as info:
        get_workload("mlp").load_data("train")
    message = one_line(info)
    assert f"mnist is not in {place / 'data'} (given by REFBENCH_DATA); expected there: MNIST/raw/" in message
    assert "its stand-in fashion-mnist is missing too" in message and "FashionMNIST/raw/" in message


def test_a_data_dir_that_does_not_exist_is_an_error(place):
    with pytest.raises(RefbenchError, match=r"data directory .*nowhere \(given by --data-dir\) does not exist"):
        data.load("mnist", "train", data_dir=place / "nowhere")


# ----- bad files: one line naming the file and what fetches a good one -----

def _truncate(blob):
    return blob[:-16]


def _set_magic(value):
    return lambda blob: value.to_bytes(4, "big") + blob[4:]


@pytest.mark.parametrize("split, which, fault, problem", [
    ("train", 0, _truncate, r"truncated: 15680 bytes, its header \(20x28x28\) needs 15696"),
    ("train", 0, lambda blob: blob + b"\0", r"1 bytes too long"),
    ("train", 0, _set_magic(0x0801), r"wrong magic number 0x00000801, expected 0x00000803"),
    ("test", 1, _set_magic(0x0803), r"wrong magic number 0x00000803, expected 0x00000801"),
    ("train", 0, lambda blob: blob[:5], r"5 bytes, too short for an idx header"),
    ("test", 1, lambda blob: idx_bytes(np.arange(9, dtype="uint8")), r"9 labels for the 10 images"),
    ("test", 1, lambda blob: blob[:-1] + b"\x0a", r"label 10 outside 0-9"),
    ("test", 0, lambda blob: idx_bytes(np.zeros((10, 32, 32), "uint8")), r"images of 32x32 pixels"),
])
def test_a_bad_idx_file_is_one_line_naming_it(place, split, which, fault, problem):
    root = place / "data"
    path = write_set(root / "MNIST" / "raw") / FILES[split][which]
    path.write_bytes(fault(path.read_bytes()))
    with pytest.raises(BadDataFile, match=problem) as info:
        data.load("mnist", split, data_dir=root)
    message = one_line(info)
    assert message.startswith(f"{path}: ") and info.value.path == path
    assert "replace it with a good copy (to get one: torchvision's download" in message


def test_a_bad_file_in_the_cache_says_to_delete_it(place):
    path = write_set(_images.cache_root() / "FashionMNIST" / "raw") / FILES["train"][0]
    path.write_bytes(_truncate(path.read_bytes()))
    with pytest.raises(BadDataFile) as info:
        data.load("fashion-mnist", "train")
    assert one_line(info).endswith(f"delete it (`rm {path}`) and refbench unpacks it again from "
                                   f"dataset-fashion-mnist or uses torchvision's download where there is a network")


@pytest.mark.parametrize("fault, problem", [
    (lambda gz: gz[: len(gz) // 2], "not a complete gzip file"),
    (lambda gz: gzip.compress(_set_magic(0)(gzip.decompress(gz))), "wrong magic number 0x00000000"),
])
def test_a_bad_system_package_file_says_to_reinstall_and_is_not_unpacked(place, fault, problem):
    path = write_set(place / "system", gz=True) / f"{FILES['test'][0]}.gz"
    path.write_bytes(fault(path.read_bytes()))
    with pytest.raises(BadDataFile, match=problem) as info:
        data.load("fashion-mnist", "train")
    message = one_line(info)
    assert message.startswith(f"{path}: ")
    assert message.endswith("`apt-get install --reinstall dataset-fashion-mnist`")
    assert not (_images.cache_root() / "FashionMNIST").exists()


def test_a_partial_copy_in_the_data_dir_names_the_missing_file(place):
    root = place / "data"
    (write_set(root / "MNIST" / "raw") / FILES["test"][1]).unlink()
    with pytest.raises(BadDataFile, match="missing, while 3 other files of mnist are in") as info:
        data.load("mnist", "train", data_dir=root)
    assert info.value.path == root / "MNIST" / "raw" / FILES["test"][1]


# ----- `refbench data` -----

def test_refbench_data_shows_the_bad_file_and_exits_2(place, image_sources_only, capsys):
    root = place / "data"
    path = write_set(root / "FashionMNIST" / "raw") / FILES["train"][0]
    path.write_bytes(_truncate(path.read_bytes()))
    assert main(["data", "--data-dir", str(root)]) == 2
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines["fashion-mnist"].split()[1] == "bad" and f"{path}: truncated" in lines["fashion-mnist"]
    assert lines["mnist"].split()[1] == "bad"                    # its stand-in is the bad set
    assert lines["cifar10"].split()[1] == "missing" and f"not in {root}" in lines["cifar10"]


def test_refbench_data_lists_mnist_found_or_what_stands_in(place, image_sources_only, capsys):
    root = place / "data"
    write_set(root / "FashionMNIST" / "raw")
    assert main(["data", "--data-dir", str(root)]) == 0
    mnist = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("mnist "))
    assert mnist.split()[1:4] == ["missing", "fashion-mnist", "stands"]
    assert f"(data directory {root}); data set mnist is not in {root}" in mnist
    write_set(root / "MNIST" / "raw")
    assert main(["data", "--data-dir", str(root), "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["mnist"]["status"] == "found" and rows["mnist"]["size"] == {"train": 20, "test": 10}


def test_refbench_data_with_a_missing_data_dir_is_one_error_line(place, capsys):
    assert main(["data", "--data-dir", str(place / "nowhere")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("refbench: error: data directory ")


# ----- the published checksums -----

def _flip_a_pixel(blob: bytes) -> bytes:
    """One byte changed in the middle of the images: header, size, shape and labels all stay valid."""
    middle = len(blob) // 2
    return blob[:middle] + bytes([blob[middle] ^ 0x40]) + blob[middle + 1:]


@pytest.mark.parametrize("gz", [False, True], ids=["uncompressed", "gzipped"])
def test_a_flipped_byte_fails_the_published_md5(place, monkeypatch, gz):
    """The sums are the contents' (as published for each idx file): gzipped or not, one check."""
    root = place / "data"
    folder = write_set(root / "MNIST" / "raw", gz=gz)
    suffix = ".gz" if gz else ""
    sums = {name: hashlib.md5(_content(folder / f"{name}{suffix}")).hexdigest() for pair in FILES.values()
            for name in pair}
    monkeypatch.setitem(_images.IMAGE_SETS, "mnist", dataclasses.replace(_images.IMAGE_SETS["mnist"], md5=sums))
    assert len(data.load("mnist", "train", data_dir=root)) == 20          # the sums hold for the files as written
    path = folder / f"{FILES['train'][0]}{suffix}"
    flipped = _flip_a_pixel(_content(path))
    path.write_bytes(gzip.compress(flipped) if gz else flipped)
    with pytest.raises(BadDataFile) as info:
        data.load("mnist", "train", data_dir=root)
    content = "its content (decompressed)" if gz else "its content"
    assert one_line(info).startswith(f"{path}: the MD5 of {content} is not the published {sums[FILES['train'][0]]}: "
                                     f"the file was altered or damaged; replace it with a good copy")


def _content(path) -> bytes:
    return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()


SYSTEM_FASHION = _images.IMAGE_SETS["fashion-mnist"].system_dir


def test_the_published_sums_are_those_of_the_real_fashion_mnist(tmp_path, monkeypatch, real_data):
    """The system package's files pass as shipped (gzipped) and unpacked; one flipped byte in an unpacked copy,
    which every other check passes, is named."""
    def system_files():
        if not all(os.path.isfile(f"{SYSTEM_FASHION}/{name}.gz") for pair in FILES.values() for name in pair):
            raise DataMissing(f"the system package's Fashion-MNIST is not in {SYSTEM_FASHION}")

    real_data(system_files)
    monkeypatch.setenv("REFBENCH_OFFLINE", "1")
    shipped = tmp_path / "shipped" / "fashion-mnist"
    unpacked = tmp_path / "unpacked" / "fashion-mnist"
    shipped.mkdir(parents=True)
    unpacked.mkdir(parents=True)
    for pair in FILES.values():
        for name in pair:
            gz = Path(f"{SYSTEM_FASHION}/{name}.gz").read_bytes()
            (shipped / f"{name}.gz").write_bytes(gz)
            (unpacked / name).write_bytes(gzip.decompress(gz))
    assert len(data.load("fashion-mnist", "test", data_dir=shipped.parent, normalize=False)) == 10000
    assert len(data.load("fashion-mnist", "test", data_dir=unpacked.parent, normalize=False)) == 10000
    images = unpacked / FILES["train"][0]
    images.write_bytes(_flip_a_pixel(images.read_bytes()))
    with pytest.raises(BadDataFile, match="MD5 of its content is not the published f4a8712d7a061bf5bd6d2ca38dc4d50a"):
        data.load("fashion-mnist", "train", data_dir=unpacked.parent)
