"""Image data sets through torchvision, found on disk or fetched.

Lookup order for each set, first hit wins:
1. ``data_dir`` (``--data-dir``) or ``$REFBENCH_DATA``, in torchvision's layout;
2. refbench's cache (``$REFBENCH_CACHE``, default ``~/.cache/refbench/data``),
   where earlier downloads and unpacked system copies live;
3. files shipped by a system package (Fashion-MNIST: Debian's
   ``dataset-fashion-mnist``), unpacked into the cache once;
4. torchvision's download into the cache, when the network allows.
A miss raises ``RefbenchError`` naming every place looked and how to get it.
"""
from __future__ import annotations

import gzip
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torchvision

from reference_models._errors import RefbenchError


@dataclass(frozen=True)
class ImageSet:
    name: str
    torchvision_class: Callable
    raw_files: tuple[str, ...]          # what torchvision needs under its folder
    folder: str                         # torchvision's folder under the root
    system_dir: str | None              # gzipped idx files from a system package
    how_to_get: str
    mean: tuple[float, ...]
    std: tuple[float, ...]


_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

IMAGE_SETS = {
    "fashion-mnist": ImageSet(
        "fashion-mnist", torchvision.datasets.FashionMNIST, _MNIST_FILES, "FashionMNIST/raw",
        "/usr/share/datasets/fashion-mnist",
        "apt-get install dataset-fashion-mnist (or put torchvision's FashionMNIST/ under --data-dir)",
        (0.2860,), (0.3530,)),
    "mnist": ImageSet(
        "mnist", torchvision.datasets.MNIST, _MNIST_FILES, "MNIST/raw", None,
        "run once with network access, or put torchvision's MNIST/ under --data-dir",
        (0.1307,), (0.3081,)),
    "cifar10": ImageSet(
        "cifar10", torchvision.datasets.CIFAR10,
        ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
         "test_batch", "batches.meta"), "cifar-10-batches-py", None,
        "run once with network access, or put torchvision's cifar-10-batches-py/ under --data-dir",
        (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}

_failed_downloads: set[str] = set()


def cache_root() -> Path:
    return Path(os.environ.get("REFBENCH_CACHE", Path.home() / ".cache" / "refbench")) / "data"


def user_roots(data_dir: str | os.PathLike | None) -> list[Path]:
    roots = [data_dir, os.environ.get("REFBENCH_DATA")]
    return [Path(r) for r in roots if r]


def _has_files(root: Path, spec: ImageSet) -> bool:
    return all((root / spec.folder / f).is_file() for f in spec.raw_files)


def _unpack_system_copy(spec: ImageSet, dest_root: Path) -> bool:
    source = Path(spec.system_dir) if spec.system_dir else None
    if source is None or not all((source / f"{f}.gz").is_file() for f in spec.raw_files):
        return False
    target = dest_root / spec.folder
    target.mkdir(parents=True, exist_ok=True)
    for f in spec.raw_files:
        partial = target / f"{f}.partial"
        with gzip.open(source / f"{f}.gz", "rb") as src, open(partial, "wb") as dst:
            shutil.copyfileobj(src, dst)
        partial.replace(target / f)
    return True


def _download(spec: ImageSet, root: Path) -> bool:
    if spec.name in _failed_downloads or os.environ.get("REFBENCH_OFFLINE"):
        return False
    try:
        spec.torchvision_class(root=str(root), train=True, download=True)
        spec.torchvision_class(root=str(root), train=False, download=True)
    except Exception:  # no network, server gone, checksum mismatch: try no more this process
        _failed_downloads.add(spec.name)
        return False
    return _has_files(root, spec)


def locate(name: str, data_dir: str | os.PathLike | None = None, *, download: bool = True) -> tuple[Path, str]:
    """Return (torchvision root, how it was found) for an image set, or raise."""
    spec = IMAGE_SETS[name]
    looked = []
    for root in user_roots(data_dir):
        if _has_files(root, spec):
            return root, f"user directory {root}"
        looked.append(str(root / spec.folder))
    cache = cache_root()
    if _has_files(cache, spec):
        return cache, f"cache {cache}"
    looked.append(str(cache / spec.folder))
    if spec.system_dir:
        if _unpack_system_copy(spec, cache):
            return cache, f"system package files {spec.system_dir}"
        looked.append(spec.system_dir)
    if download:
        if _download(spec, cache):
            return cache, "torchvision download"
        looked.append("torchvision download (no network?)")
    raise RefbenchError(
        f"data set {name} not found (looked in: {'; '.join(looked)}); to get it: {spec.how_to_get}")


def load_images(name: str, split: str, data_dir=None, *, download: bool = True) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(uint8 images N x C x H x W, int64 labels, where found) for ``split`` in train/test."""
    spec = IMAGE_SETS[name]
    root, found = locate(name, data_dir, download=download)
    ds = spec.torchvision_class(root=str(root), train=(split == "train"), download=False)
    images = torch.as_tensor(ds.data)
    images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
    return images.contiguous(), torch.as_tensor(ds.targets, dtype=torch.long), found
