"""What the CIFAR-10 workloads share: shapes, data set, training-time augmentation, the quick width.

Real CIFAR-10 is trained with the usual random 4-pixel-padded crop and
horizontal flip (the full accuracy targets assume them) unless a recipe says
``augment=False``, as document 001's does. The synthetic CIFAR-shaped task is
never augmented: its classes are fixed colour patterns, and a flipped
pattern would be a different class's image.
"""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F

from refbench.models import data
from refbench.models._workload import Batch, Workload

QUICK_WIDTH_NOTE = (
    "The quick (CPU) target trains the same network at width 16 instead of 64 (every layer a "
    "quarter as wide, about 1/16 of the FLOPs) on the synthetic CIFAR-shaped task, so that CI "
    "checks the whole training path in seconds; the full target uses width 64 on real CIFAR-10.")


def random_crop_flip(x: torch.Tensor, *, padding: int = 4, generator: torch.Generator) -> torch.Tensor:
    """Per image: zero-pad by ``padding``, crop back to the original size at a random offset, flip half."""
    n, _, height, width = x.shape
    offsets = torch.randint(2 * padding + 1, (n, 2), generator=generator).to(x.device)
    flips = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    padded = F.pad(x, (padding,) * 4)
    rows = (offsets[:, 0, None] + torch.arange(height, device=x.device))         # N x H
    cols = (offsets[:, 1, None] + torch.arange(width, device=x.device))          # N x W
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    index = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


class CifarWorkload(Workload):
    dataset = "cifar10"
    input_shape = (3, 32, 32)

    def train_batches(self, split, batch_size: int, *, generator: torch.Generator,
                      augment: bool | None = None) -> Iterator[Batch]:
        augment = split.dataset == "cifar10" and augment is not False
        for x, y in data.batches(split, batch_size, shuffle=True, generator=generator):
            yield (random_crop_flip(x, generator=generator) if augment else x), y
