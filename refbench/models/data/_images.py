"""Image data sets, found on disk or fetched, every file checked before use.

Lookup for each set, first hit wins:
1. the data directory the user named (``data_dir``, i.e. ``--data-dir``, else
   ``$REFBENCH_DATA``). When one is named it is the only place looked, so a
   set it lacks is an error that says what was expected there. MNIST and
   Fashion-MNIST sit in torchvision's layout (``MNIST/raw/``,
   ``FashionMNIST/raw/``) or as the four idx files in ``mnist/`` or
   ``fashion-mnist/``, each file gzipped or not; CIFAR-10 in torchvision's
   ``cifar-10-batches-py/``;
2. refbench's cache (``$REFBENCH_CACHE``, default ``~/.cache/refbench/data``),
   in torchvision's layout: earlier downloads and unpacked system copies;
3. files shipped by a system package (Fashion-MNIST: Debian's
   ``dataset-fashion-mnist``), checked and unpacked into the cache once;
4. torchvision's download into the cache, when the network allows.

A set with a stand-in (MNIST: Fashion-MNIST, the same shapes) is replaced by
it when missing, and the ``Found`` returned says which set it holds; a set
that is present but bad is an error, never replaced. Idx files are read by
``_idx`` (magic number, size, shapes, labels, and the published MD5 of
their content, gzipped or not); CIFAR-10 by torchvision after torchvision's
MD5 check of each file it reads, with the failing file named.
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from refbench.models.data import _idx
from refbench.models.data._files import SPLITS, BadDataFile, DataMissing, explicit_directory, read_bytes

IDX_SPLITS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_IDX_FILES = tuple(name for pair in IDX_SPLITS.values() for name in pair)
# The MD5 of each idx file's content (the file itself, or what its .gz holds): the sums published with the data
# sets. A gzipped copy is checked by its content, since a repackaged .gz (Debian's) has sums of its own.
MNIST_MD5 = {"train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
             "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
             "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
             "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637"}
FASHION_MNIST_MD5 = {"train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                     "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
                     "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
                     "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965"}
_NETWORK = "torchvision's download where there is a network"


@dataclass(frozen=True)
class ImageSet:
    name: str
    torchvision_name: str               # its class in torchvision.datasets
    format: str                         # "idx" or "cifar-pickle"
    raw_files: tuple[str, ...]          # the files a copy consists of
    folder: str                         # torchvision's folder under a root
    how_to_get: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    system_package: str | None = None   # a package that ships the gzipped idx files ...
    system_dir: str | None = None       # ... here
    stand_in: str | None = None         # the set used in its place when it is missing
    md5: dict[str, str] | None = None   # raw file name -> the published MD5 of its (decompressed) content

    def torchvision_class(self) -> Callable:
        """torchvision's class of this data set (torchvision is imported only when a data set needs it)."""
        import torchvision.datasets

        return getattr(torchvision.datasets, self.torchvision_name)

    def expected(self) -> str:
        """What a data directory must hold for this set."""
        files = ", ".join(self.raw_files)
        if self.format == "idx":
            return f"{self.folder}/ (torchvision's layout) or {self.name}/ holding {files} (each may be gzipped)"
        return f"{self.folder}/ holding {files} (torchvision's layout)"


IMAGE_SETS = {
    "fashion-mnist": ImageSet(
        "fashion-mnist", "FashionMNIST", "idx", _IDX_FILES, "FashionMNIST/raw",
        f"`apt-get install dataset-fashion-mnist`, or {_NETWORK}", (0.2860,), (0.3530,),
        system_package="dataset-fashion-mnist", system_dir="/usr/share/datasets/fashion-mnist",
        md5=FASHION_MNIST_MD5),
    "mnist": ImageSet(
        "mnist", "MNIST", "idx", _IDX_FILES, "MNIST/raw",
        f"{_NETWORK} (run once), or a copy in --data-dir", (0.1307,), (0.3081,),
        stand_in="fashion-mnist", md5=MNIST_MD5),
    "cifar10": ImageSet(
        "cifar10", "CIFAR10", "cifar-pickle",
        ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
         "test_batch", "batches.meta"), "cifar-10-batches-py",
        f"{_NETWORK} (run once), or a copy in --data-dir", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}

_failed_downloads: set[str] = set()


@dataclass(frozen=True)
class Found:
    """A complete copy of a set: its files, where they are, and what to do about a bad one there."""

    spec: ImageSet
    files: dict[str, Path]              # raw file name -> the file (an idx file may be gzipped)
    where: str
    remedy: Callable[[Path], str]

    def read(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 images N x C x H x W, int64 labels) of ``split``, every file checked."""
        if self.spec.format == "idx":
            images, labels = IDX_SPLITS[split]
            sums = self.spec.md5 or {}
            return _idx.read_split(self.files[images], self.files[labels], self.remedy,
                                   (sums.get(images), sums.get(labels)))
        return _read_cifar(self, split)


def _read_cifar(found: Found, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision.datasets.utils import check_integrity

    cls = found.spec.torchvision_class()
    folder = found.files["batches.meta"].parent
    sums = dict([*cls.train_list, *cls.test_list, (cls.meta["filename"], cls.meta["md5"])])
    used = [name for name, _ in (cls.train_list if split == "train" else cls.test_list)] + [cls.meta["filename"]]
    for name in used:   # every file checked before use: a flipped byte can still unpickle
        if not check_integrity(found.files[name], sums[name]):
            raise BadDataFile(found.files[name], f"its MD5 is not torchvision's {sums[name]} (truncated or altered)",
                              found.remedy(found.files[name]))
    try:
        ds = cls(root=str(folder.parent), train=(split == "train"), download=False)
    except (RuntimeError, pickle.UnpicklingError, EOFError) as exc:
        raise BadDataFile(folder, f"torchvision cannot read it ({exc})", found.remedy(folder)) from None
    images = torch.as_tensor(ds.data).permute(0, 3, 1, 2).contiguous()
    return images, torch.as_tensor(ds.targets, dtype=torch.long)


def cache_root() -> Path:
    return Path(os.environ.get("REFBENCH_CACHE", Path.home() / ".cache" / "refbench")) / "data"


def _files_in(folder: Path, spec: ImageSet) -> tuple[dict[str, Path], list[str]]:
    """(the set's files present in ``folder``, the names missing); an idx file may end in ``.gz``."""
    present, missing = {}, []
    for name in spec.raw_files:
        options = [folder / name, folder / f"{name}.gz"] if spec.format == "idx" else [folder / name]
        hit = next((path for path in options if path.is_file()), None)
        if hit is None:
            missing.append(name)
        else:
            present[name] = hit
    return present, missing


def _complete_copy(folder: Path, spec: ImageSet, remedy: Callable[[Path], str]) -> dict[str, Path] | None:
    """The set's files in ``folder``; None when none is there; a partial copy is a bad file."""
    present, missing = _files_in(folder, spec)
    if present and missing:
        raise BadDataFile(folder / missing[0], f"missing, while {len(present)} other files of {spec.name} "
                                               f"are in {folder}", remedy(folder / missing[0]))
    return present or None


def _in_user_directory(spec: ImageSet, root: Path, named: str) -> Found:
    def remedy(path: Path) -> str:
        return f"replace it with a good copy (to get one: {spec.how_to_get})"

    folders = [root / spec.folder] + ([root / spec.name] if spec.format == "idx" else [])
    for folder in folders:
        files = _complete_copy(folder, spec, remedy)
        if files:
            return Found(spec, files, f"data directory {root}", remedy)
    raise DataMissing(f"data set {spec.name} is not in {root} (given by {named}); expected there: {spec.expected()}")


def _cache_remedy(spec: ImageSet) -> Callable[[Path], str]:
    again = (f"unpacks it again from {spec.system_package} or uses {_NETWORK}" if spec.system_package
             else f"fetches it again through {_NETWORK}")
    return lambda path: f"delete it (`rm {path}`) and refbench {again}"


def _system_remedy(spec: ImageSet) -> Callable[[Path], str]:
    return lambda path: f"reinstall the package: `apt-get install --reinstall {spec.system_package}`"


def _unpack_system_copy(spec: ImageSet, cache: Path) -> Found | None:
    """Check the system package's gzipped files where they lie, then unpack them into the cache."""
    files = _complete_copy(Path(spec.system_dir), spec, _system_remedy(spec))
    if files is None:
        return None
    shipped = Found(spec, files, f"system package files {spec.system_dir}", _system_remedy(spec))
    for split in SPLITS:
        shipped.read(split)
    target = cache / spec.folder
    target.mkdir(parents=True, exist_ok=True)
    for name, path in files.items():
        partial = target / f"{name}.partial"
        partial.write_bytes(read_bytes(path, shipped.remedy(path)))
        partial.replace(target / name)
    return Found(spec, {name: target / name for name in files}, shipped.where, _cache_remedy(spec))


def _download(spec: ImageSet, cache: Path) -> bool:
    if spec.name in _failed_downloads or os.environ.get("REFBENCH_OFFLINE"):
        return False
    try:
        spec.torchvision_class()(root=str(cache), train=True, download=True)
        spec.torchvision_class()(root=str(cache), train=False, download=True)
    except Exception:  # no network, server gone, checksum mismatch: try no more this process
        _failed_downloads.add(spec.name)
        return False
    return not _files_in(cache / spec.folder, spec)[1]


def locate(name: str, data_dir: str | os.PathLike | None = None, *, download: bool = True) -> Found:
    """A complete copy of the set ``name``, or ``DataMissing`` naming every place looked."""
    spec = IMAGE_SETS[name]
    explicit = explicit_directory(data_dir)
    if explicit is not None:
        return _in_user_directory(spec, *explicit)
    cache = cache_root()
    present, missing = _files_in(cache / spec.folder, spec)
    if not missing:
        return Found(spec, present, f"cache {cache}", _cache_remedy(spec))
    looked = [str(cache / spec.folder)]   # a partial cache copy is completed by what follows
    if spec.system_dir:
        unpacked = _unpack_system_copy(spec, cache)
        if unpacked is not None:
            return unpacked
        looked.append(spec.system_dir)
    if download:
        if _download(spec, cache):
            return Found(spec, _files_in(cache / spec.folder, spec)[0], "torchvision download", _cache_remedy(spec))
        looked.append("torchvision download (no network?)")
    raise DataMissing(f"data set {name} not found (looked in: {'; '.join(looked)}); to get it: {spec.how_to_get}")


def locate_or_stand_in(name: str, data_dir=None, *, download: bool = True) -> tuple[Found, DataMissing | None]:
    """``name``'s copy, or its stand-in's with the reason ``name`` itself is missing."""
    try:
        return locate(name, data_dir, download=download), None
    except DataMissing as missing:
        stand_in = IMAGE_SETS[name].stand_in
        if stand_in is None:
            raise
        try:
            return locate(stand_in, data_dir, download=download), missing
        except DataMissing as also:
            raise DataMissing(f"{missing}; its stand-in {stand_in} is missing too: {also}") from None
