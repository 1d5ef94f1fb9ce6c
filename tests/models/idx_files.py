"""Tiny MNIST-format data sets written by tests: idx files in any of the layouts refbench reads."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

COUNTS = {"train": 20, "test": 10}
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def idx_bytes(values: np.ndarray) -> bytes:
    """``values`` (uint8) as an idx file: magic 0x0000080N, big-endian dimensions, the bytes."""
    header = bytes([0, 0, 0x08, values.ndim]) + struct.pack(f">{values.ndim}I", *values.shape)
    return header + values.astype(np.uint8).tobytes()


def write_set(folder: Path, *, brightness: int = 0, gz: bool = False) -> Path:
    """The four idx files in ``folder``: image i of a split has pixel (0, 0) = i and every other pixel
    ``brightness``; its label is i % 10."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, (images_name, labels_name) in FILES.items():
        n = COUNTS[split]
        images = np.full((n, 28, 28), brightness, dtype=np.uint8)
        images[:, 0, 0] = np.arange(n)
        for name, values in ((images_name, images), (labels_name, np.arange(n) % 10)):
            blob = idx_bytes(values)
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(blob))
            else:
                (folder / name).write_bytes(blob)
    return folder
