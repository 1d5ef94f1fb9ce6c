"""FID-FMNIST: the Frechet distance between image sets in a Fashion-MNIST classifier's feature space.

This is not Inception FID. The feature network is a small convolutional
classifier that refbench trains on the Fashion-MNIST training set (images
scaled to [-1, 1], the generators' range) the first time it is needed and
caches under the refbench cache directory. Its penultimate layer gives 64
features per image; the distance compares their means and covariances:

    d = |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))

Only distances computed with the same feature network (``VERSION``) and
the same numbers of images are comparable, so results report the distance
between two halves of the real test set beside it, as the floor a perfect
generator would approach.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from refbench.models import data
from refbench.models.data._images import cache_root

VERSION = 1            # bump when the network or its training changes: old cache files are then ignored
FEATURES = 64
TRAIN_EPOCHS = 1
_networks: dict[Path, "FeatureNet"] = {}


class FeatureNet(nn.Module):
    """Two strided convolutions and a 64-unit layer whose activations are the features."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 5, stride=2, padding=2), nn.ReLU(),   # 14x14
            nn.Conv2d(16, 32, 5, stride=2, padding=2), nn.ReLU(),  # 7x7
            nn.Flatten(), nn.Linear(32 * 7 * 7, FEATURES), nn.ReLU(),
        )
        self.head = nn.Linear(FEATURES, 10)

    def forward(self, x):
        return self.head(self.body(x))

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        return torch.cat([self.body(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


def gan_range(split: data.TensorSplit) -> data.TensorSplit:
    """An unnormalised image split (values in [0, 1]) rescaled to [-1, 1]."""
    return dataclasses.replace(split, x=split.x * 2 - 1)


def load_fashion_mnist(split: str, *, data_dir=None, device="cpu") -> data.TensorSplit:
    return gan_range(data.load("fashion-mnist", split, data_dir=data_dir, device=device, normalize=False))


def cache_file() -> Path:
    return cache_root().parent / "models" / f"fid_fmnist_v{VERSION}.pt"


def train_feature_net(*, data_dir=None, seed: int = 0) -> tuple[FeatureNet, float]:
    """Train the feature network on CPU (seconds) with a fixed seed; return it and its test accuracy."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = FeatureNet()
        optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
        train = load_fashion_mnist("train", data_dir=data_dir)
        generator = torch.Generator().manual_seed(seed)
        for _ in range(TRAIN_EPOCHS):
            for x, y in data.batches(train, 128, shuffle=True, generator=generator):
                optimizer.zero_grad(set_to_none=True)
                nn.functional.cross_entropy(net(x), y).backward()
                optimizer.step()
    test = load_fashion_mnist("test", data_dir=data_dir)
    net.eval()
    with torch.no_grad():
        accuracy = (net(test.x).argmax(1) == test.y).float().mean().item()
    return net, accuracy


def feature_net(*, device="cpu", data_dir=None) -> FeatureNet:
    """The cached feature network, trained and saved on first use; ``accuracy`` is its test accuracy."""
    path = cache_file()
    if path not in _networks:
        if path.is_file():
            saved = torch.load(path, map_location="cpu", weights_only=True)
            net, accuracy = FeatureNet(), saved["accuracy"]
            net.load_state_dict(saved["state_dict"])
        else:
            net, accuracy = train_feature_net(data_dir=data_dir)
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".partial")
            torch.save({"state_dict": net.state_dict(), "accuracy": accuracy}, partial)
            partial.replace(path)
        net.accuracy = accuracy
        _networks[path] = net.eval().requires_grad_(False)
    return _networks[path].to(device)


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (rows are samples), in float64."""
    a, b = a.double(), b.double()
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    # tr((S_a S_b)^(1/2)) = tr((R S_b R)^(1/2)) with R = S_a^(1/2): symmetric, so eigvalsh applies.
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()
    return ((mean_a - mean_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross).item()


def real_floor(features: torch.Tensor, *, seed: int = 0) -> float:
    """Distance between two random halves of one real feature set: what a perfect generator would score."""
    order = torch.randperm(len(features), generator=torch.Generator().manual_seed(seed)).to(features.device)
    half = len(features) // 2
    return frechet_distance(features[order[:half]], features[order[half:2 * half]])
