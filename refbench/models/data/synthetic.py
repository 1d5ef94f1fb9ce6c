"""Deterministic, learnable synthetic image data for throughput and CPU tests.

``synthetic-cifar10``: each class owns a smooth random colour pattern; a
sample is its class's pattern at a random contrast under Gaussian noise. A
network must learn the patterns to beat chance (10%), and a small one does
in seconds, which is what a CPU check of the CIFAR workloads needs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

SIZES = {"train": 10_000, "test": 2_000}


def class_patterns(num_classes: int, shape: tuple[int, int, int], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    channels, height, width = shape
    coarse = torch.randn(num_classes, channels, 4, 4, generator=g)
    return F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)


def class_conditional_images(split: str, *, num_classes: int = 10, shape=(3, 32, 32),
                             noise: float = 1.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(float images N x C x H x W, labels) for ``split``; the same call gives the same data."""
    patterns = class_patterns(num_classes, shape, seed)
    g = torch.Generator().manual_seed(seed * 1000 + (1 if split == "train" else 2))
    n = SIZES[split]
    labels = torch.randint(num_classes, (n,), generator=g)
    contrast = torch.empty(n, 1, 1, 1).uniform_(0.5, 1.5, generator=g)
    images = patterns[labels] * contrast + noise * torch.randn(n, *shape, generator=g)
    return images, labels
