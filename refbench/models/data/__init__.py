"""Data sets as tensors: find them, or say exactly how to get them.

``load(name, split)`` returns a ``TensorSplit`` whose ``dataset`` field names
the data set really used; results carry that name. A set that is missing but
has a stand-in (MNIST: Fashion-MNIST) is loaded as the stand-in and named
``"fashion-mnist (stand-in for mnist)"``. Image sets come from disk or
torchvision (see ``_images``), synthetic ones from ``synthetic``; other
modules add their sources with ``register_source`` so ``refbench data`` can
list everything. A missing set raises ``DataMissing``, a bad file
``BadDataFile`` naming it; both are ``RefbenchError``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from refbench.errors import RefbenchError
from refbench.models.data import synthetic
from refbench.models.data._files import BadDataFile, DataMissing, check_split, explicit_directory
from refbench.models.data._images import IMAGE_SETS, SPLITS, locate_or_stand_in

__all__ = ["TensorSplit", "load", "batches", "describe_sources", "register_source", "image_stats",
           "stand_in_name", "DataMissing", "BadDataFile"]


@dataclass
class TensorSplit:
    """One split of a data set held as tensors (on any device)."""

    x: torch.Tensor
    y: torch.Tensor
    dataset: str      # the data set really used, e.g. "fashion-mnist (stand-in for mnist)"
    origin: str       # where it was found

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device) -> "TensorSplit":
        return TensorSplit(self.x.to(device), self.y.to(device), self.dataset, self.origin)


def image_stats(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) used to normalise an image set."""
    spec = IMAGE_SETS[name]
    return spec.mean, spec.std


def stand_in_name(used: str, requested: str) -> str:
    """How a split and its records name ``used`` when ``requested`` was asked for."""
    return used if used == requested else f"{used} (stand-in for {requested})"


def load(name: str, split: str, *, data_dir: str | os.PathLike | None = None, device="cpu",
         normalize: bool = True, download: bool = True) -> TensorSplit:
    """Load ``split`` ("train" or "test") of an image data set as float tensors on ``device``."""
    check_split(split)
    if name == "synthetic-cifar10":
        x, y = synthetic.class_conditional_images(split)
        return TensorSplit(x.to(device), y.to(device), name, "generated")
    if name not in IMAGE_SETS:
        known = sorted([*IMAGE_SETS, "synthetic-cifar10"])
        raise RefbenchError(f"unknown data set {name!r}; known: {', '.join(known)}")
    found, _ = locate_or_stand_in(name, data_dir, download=download)
    images, labels = found.read(split)
    x = images.to(device).float().div_(255)
    if normalize:
        mean, std = (torch.tensor(v, device=device).view(1, -1, 1, 1) for v in image_stats(found.spec.name))
        x = (x - mean) / std
    return TensorSplit(x, labels.to(device), stand_in_name(found.spec.name, name), found.where)


def batches(split: TensorSplit, batch_size: int, *, shuffle: bool = False,
            generator: torch.Generator | None = None, drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches indexed on the split's own device (no DataLoader, no copies to the host)."""
    n = len(split)
    order = torch.randperm(n, generator=generator).to(split.x.device) if shuffle else None
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        if order is None:
            yield split.x[start:start + batch_size], split.y[start:start + batch_size]
        else:
            idx = order[start:start + batch_size]
            yield split.x[idx], split.y[idx]


# ----- listing every source for `refbench data` -----

_SOURCES: dict[str, Callable[[str | None], dict]] = {}


def register_source(name: str, describe: Callable[[str | None], dict]) -> None:
    """Add a data source; ``describe(data_dir)`` returns {"found": where, "size": ...} (and
    "status"/"stand_in"/"error" for a stand-in) or raises DataMissing, BadDataFile or RefbenchError."""
    _SOURCES[name] = describe


def _describe_image_set(name: str) -> Callable[[str | None], dict]:
    def describe(data_dir):
        found, missing = locate_or_stand_in(name, data_dir, download=False)
        row = {"found": found.where, "size": {s: len(found.read(s)[1]) for s in SPLITS}}
        if missing is not None:
            row.update(status="stand-in", stand_in=found.spec.name, error=str(missing))
        return row
    return describe


for _name in IMAGE_SETS:
    register_source(_name, _describe_image_set(_name))
register_source("synthetic-cifar10", lambda data_dir: {"found": "generated", "size": dict(synthetic.SIZES)})


def describe_sources(data_dir: str | None = None) -> list[dict]:
    """One row per data source: name, status, where found, size; the error of a missing set,
    and the file of a bad one. Status: found, stand-in (missing, another set takes its place),
    missing, or bad (a file is there but unusable)."""
    explicit_directory(data_dir)   # a named directory that does not exist fails the whole listing
    rows = []
    for name, describe in sorted(_SOURCES.items()):
        try:
            rows.append({"name": name, "status": "found", **describe(data_dir)})
        except BadDataFile as exc:
            rows.append({"name": name, "status": "bad", "found": None, "size": None, "error": str(exc),
                         "file": str(exc.path)})
        except RefbenchError as exc:
            rows.append({"name": name, "status": "missing", "found": None, "size": None, "error": str(exc)})
    return rows
