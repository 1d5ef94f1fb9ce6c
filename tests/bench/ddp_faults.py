"""Workloads that break DistributedDataParallel, or the comparison with one process, on purpose.

Importing this module registers them (and tests.bench.faulty_workloads', whose
``test_hang`` hangs on every rank); the ranks import it too (``--import``).
The faults that strike one rank strike rank 1 (``RANK`` is torchrun's), so
world size 1 runs them cleanly and world size 2 meets the fault; ``test_ddp_exit``
fails on rank 0, in every world.
"""
import os
import time

import torch
import torch.nn.functional as F
from torch import nn

import bench.timing
from reference_models import Recipe, register_model
from tests.bench.faulty_workloads import TinyWorkload


def _on_rank_1() -> bool:
    return os.environ.get("RANK") == "1"


@register_model
class RaiseOnRank1(TinyWorkload):
    name = "test_ddp_raise"

    def forward(self, model, batch):
        if _on_rank_1():
            raise RuntimeError("injected failure on rank 1")
        return model(batch[0])


@register_model
class HangOnRank1(TinyWorkload):
    name = "test_ddp_hang"

    def forward(self, model, batch):
        if _on_rank_1():
            time.sleep(3600)
        return model(batch[0])


@register_model
class ExitOnRank0(TinyWorkload):
    """Rank 0 dies without a word while the others sleep outside any collective: the agent must stop them."""

    name = "test_ddp_exit"

    def forward(self, model, batch):
        if os.environ.get("RANK") == "0":
            os._exit(3)
        time.sleep(3600)


@register_model
class UnevenBlocks(TinyWorkload):
    """The ranks judge their step times differently (as on a busy machine, around the block threshold):
    rank 0 would time its steps in blocks of 5, rank 1 one by one."""

    name = "test_ddp_uneven"

    def build(self) -> nn.Module:
        bench.timing.block_size = lambda step_ms: 1 if _on_rank_1() else 5   # this launch's ranks only
        return super().build()


@register_model
class UnsyncedGradients(TinyWorkload):
    """Steps inside ``no_sync``: DDP skips the gradient all-reduce, so every rank trains on its own shard."""

    name = "test_ddp_unsynced"

    def train_step(self, model, batch, optimizer, *, scaler=None):
        if isinstance(model, nn.parallel.DistributedDataParallel):
            with model.no_sync():
                return super().train_step(model, batch, optimizer, scaler=scaler)
        return super().train_step(model, batch, optimizer, scaler=scaler)


@register_model
class BatchNormTiny(TinyWorkload):
    """Plain BatchNorm: each rank normalises its shard by the shard's own statistics."""

    name = "test_ddp_batchnorm"

    def build(self) -> nn.Module:
        return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4))


@register_model
class RandomStep(TinyWorkload):
    """Functional dropout that dropout_off cannot reach: each rank draws its own mask."""

    name = "test_ddp_random"

    def forward(self, model, batch):
        return F.dropout(model(batch[0]), 0.5, training=True)


@register_model
class FeaturesFirst(TinyWorkload):
    """A batch laid out (features, batch): it cannot be split across ranks by rows."""

    name = "test_ddp_features_first"

    def example_batch(self, batch_size, device="cpu", *, seed=0):
        x, y = super().example_batch(batch_size, device, seed=seed)
        return x.T.contiguous(), y

    def forward(self, model, batch):
        return model(batch[0].T)


class _Shifted(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(8, 4)
        self.shift = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return self.linear(x) + self.shift


@register_model
class ShiftInvariant(TinyWorkload):
    """A logit shift that cross-entropy cannot see: its gradient is zero in exact arithmetic, rounding in fp32,
    and Adam turns the rounding into steps of the learning rate's size."""

    name = "test_ddp_shift_invariant"
    recipes = {"fast": Recipe(optimizer="adam", lr=1e-2)}

    def build(self) -> nn.Module:
        return _Shifted()
