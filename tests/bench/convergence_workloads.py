"""Small workloads for the convergence tests: real training on two blobs, and a curve known in advance.

``registered(*classes)`` registers them for one test and removes them after;
the ``scripted`` fixture registers ``Scripted`` with its fake clock.
"""
from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from reference_models import Recipe, Target, Workload, register_model, unregister_model
from reference_models.data import TensorSplit


class Blobs(Workload):
    """Two Gaussian blobs in 2-D (512 points a split): a linear layer separates them in a few steps."""

    name = "test_blobs"
    source = "refbench tests"
    input_shape = (2,)
    num_classes = 2
    recipes = {"fast": Recipe(lr=0.05, batch_size=48)}     # 10 full batches and one of 32 per epoch
    targets = {"quick": Target("accuracy", 0.9, max_epochs=2, eval_every_steps=5, wall_cap_s=60)}

    def build(self):
        return nn.Linear(2, 2)

    def load_data(self, split, *, device="cpu", data_dir=None, dataset=None):
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        y = torch.randint(2, (512,), generator=g)
        x = torch.randn(512, 2, generator=g) + 1.5 * (2 * y[:, None] - 1)
        return TensorSplit(x.to(device), y.to(device), "two-blobs", "generated")


class AsWrittenBlobs(Blobs):
    """``as_written=True`` ends the model in a softmax before the cross-entropy, as documents do."""

    name = "test_as_written_blobs"
    variants = {"as_written": (False, True)}

    def build(self, *, as_written: bool):
        return nn.Sequential(nn.Linear(2, 2), nn.Softmax(dim=1)) if as_written else nn.Linear(2, 2)


class FakeClock:
    """What ``time.perf_counter`` reads in bench.convergence while a Scripted workload trains."""

    now = 0.0

    @classmethod
    def perf_counter(cls) -> float:
        return cls.now


class Scripted(Blobs):
    """A known curve: each step takes 1 s, each evaluation 100 s, and evaluations return ``script`` in turn."""

    name = "test_scripted"
    recipes = {"fast": Recipe(lr=0.05, batch_size=32)}      # 16 steps an epoch
    targets = {"quick": Target("accuracy", 0.95, max_epochs=1, max_steps=10, eval_every_steps=5)}
    script: list[float] = []

    def train_step(self, model, batch, optimizer, *, scaler=None):
        FakeClock.now += 1.0
        return super().train_step(model, batch, optimizer, scaler=scaler)

    def evaluate(self, model, split, *, batch_size=1000):
        FakeClock.now += 100.0
        return {"accuracy": type(self).script.pop(0)}


class Diverging(Blobs):
    """A loss that turns to NaN: the run finishes, its metric is NaN, the group misses."""

    name = "test_diverging"

    def evaluate(self, model, split, *, batch_size=1000):
        return {"accuracy": float("nan")}


@contextlib.contextmanager
def registered(*classes):
    for cls in classes:
        register_model(cls)
    try:
        yield
    finally:
        for cls in classes:
            unregister_model(cls.name)


@pytest.fixture
def scripted(monkeypatch):
    """``Scripted``, registered, with bench.convergence reading its fake clock."""
    import bench.convergence

    monkeypatch.setattr(bench.convergence, "time", FakeClock)
    FakeClock.now = 0.0
    with registered(Scripted):
        yield Scripted
