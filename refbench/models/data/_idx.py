"""The idx files of MNIST and Fashion-MNIST, read strictly.

An idx file is a magic number (two zero bytes, a type code, 0x08 for
unsigned bytes, and the number of dimensions), one big-endian int32 per
dimension, then the values. torchvision's reader asserts on the magic number
and reshapes without checking the length, so a bad file shows as a bare
``AssertionError`` or a reshape error; this reader checks the magic number,
the size the header implies, the image shape and the labels, and names the
file that fails. Where the data set publishes the MD5 of each file
(MNIST, Fashion-MNIST), the content is checked against it too: a flipped
byte passes every other check.
"""
from __future__ import annotations

import hashlib
import math
import struct
from pathlib import Path
from typing import Callable

import torch

from refbench.models.data._files import BadDataFile, read_bytes

IMAGE_SIZE = (28, 28)
NUM_CLASSES = 10
UNSIGNED_BYTE = 0x08


def parse(blob: bytes, path: Path, ndim: int, remedy: str) -> torch.Tensor:
    """The uint8 tensor an idx file of ``ndim`` dimensions holds, or ``BadDataFile``."""
    header = 4 + 4 * ndim
    if len(blob) < header:
        raise BadDataFile(path, f"{len(blob)} bytes, too short for an idx header", remedy)
    magic = int.from_bytes(blob[:4], "big")
    expected = UNSIGNED_BYTE << 8 | ndim
    if magic != expected:
        raise BadDataFile(path, f"wrong magic number 0x{magic:08x}, expected 0x{expected:08x} "
                                f"(idx, unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''})", remedy)
    dims = struct.unpack(f">{ndim}I", blob[4:header])
    size = header + math.prod(dims)
    if len(blob) != size:
        state = "truncated" if len(blob) < size else f"{len(blob) - size} bytes too long"
        raise BadDataFile(path, f"{state}: {len(blob)} bytes, its header ({'x'.join(map(str, dims))}) "
                                f"needs {size}", remedy)
    return torch.frombuffer(bytearray(blob), dtype=torch.uint8, offset=header).view(*dims)


def read_split(images_path: Path, labels_path: Path, remedy: Callable[[Path], str],
               md5: tuple[str | None, str | None] = (None, None)) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 images N x 1 x 28 x 28, int64 labels) from a checked pair of idx files; ``md5``: the published
    MD5 of each file's content, where the data set has one."""
    images_blob = read_bytes(images_path, remedy(images_path))
    images = parse(images_blob, images_path, 3, remedy(images_path))
    if tuple(images.shape[1:]) != IMAGE_SIZE:
        raise BadDataFile(images_path, f"images of {'x'.join(map(str, images.shape[1:]))} pixels, "
                                       f"expected {'x'.join(map(str, IMAGE_SIZE))}", remedy(images_path))
    labels_blob = read_bytes(labels_path, remedy(labels_path))
    labels = parse(labels_blob, labels_path, 1, remedy(labels_path))
    if len(labels) != len(images):
        raise BadDataFile(labels_path, f"{len(labels)} labels for the {len(images)} images of "
                                       f"{images_path.name}", remedy(labels_path))
    if len(labels) and int(labels.max()) >= NUM_CLASSES:
        raise BadDataFile(labels_path, f"label {int(labels.max())} outside 0-{NUM_CLASSES - 1}",
                          remedy(labels_path))
    for path, blob, published in ((images_path, images_blob, md5[0]), (labels_path, labels_blob, md5[1])):
        if published is not None and hashlib.md5(blob).hexdigest() != published:
            content = "its content (decompressed)" if path.suffix == ".gz" else "its content"
            raise BadDataFile(path, f"the MD5 of {content} is not the published {published}: the file was altered "
                                    f"or damaged", remedy(path))
    return images.unsqueeze(1).contiguous(), labels.long()
