"""Workloads that exist only for the harness's tests: one tiny and healthy, the others broken on purpose.

Importing this module registers them; the runner's children import it too
(``Settings(imports=...)``), so nothing outside the tests sees them.
"""
import os
import time

import torch
from torch import nn

from reference_models import Recipe, Workload, register_model


class _Tiny(Workload):
    source = "refbench tests"
    input_shape = (8,)
    num_classes = 4
    recipes = {"fast": Recipe(optimizer="adam", lr=1e-3)}

    def build(self) -> nn.Module:
        return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


@register_model
class TinyWorkload(_Tiny):
    name = "test_tiny"


@register_model
class CrashWorkload(_Tiny):
    """Dies without a word: what a segfault in a kernel looks like to the runner."""

    name = "test_crash"

    def forward(self, model, batch):
        print("about to crash", flush=True)
        os.abort()


@register_model
class HangWorkload(_Tiny):
    """Hangs; writes its pid to ``$REFBENCH_TEST_PIDFILE`` first, so a test can see whether it is still alive."""

    name = "test_hang"

    def forward(self, model, batch):
        if os.environ.get("REFBENCH_TEST_PIDFILE"):
            with open(os.environ["REFBENCH_TEST_PIDFILE"], "w") as f:
                f.write(str(os.getpid()))
        time.sleep(3600)


@register_model
class CpuOomWorkload(_Tiny):
    name = "test_cpu_oom"

    def forward(self, model, batch):
        return torch.empty(1 << 48)   # 1 PiB: the CPU allocator refuses


@register_model
class NanWorkload(_Tiny):
    name = "test_nan"

    def forward(self, model, batch):
        return model(batch[0]) * float("nan")


@register_model
class OomWorkload(_Tiny):
    name = "test_oom"

    def forward(self, model, batch):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")


@register_model
class DropoutWorkload(_Tiny):
    """Functional dropout that dropout_off cannot reach: the step is random."""

    name = "test_random"

    def forward(self, model, batch):
        return torch.nn.functional.dropout(model(batch[0]), 0.5, training=True)


@register_model
class SearchWorkload(_Tiny):
    name = "test_search"
    task = "hpo"
    untimed_reason = "a hyper-parameter search has no single step to time"


@register_model
class BatchNormWorkload(Workload):
    """Healthy but ill-conditioned: a conv bias in front of BatchNorm has a gradient that is zero in exact
    arithmetic, and plain fp32 lands ~2e-4 of the step's scale from fp64 at batch 2, above fp32's tolerance."""

    name = "test_batchnorm"
    source = "refbench tests"
    input_shape = (3, 16, 16)
    recipes = {"fast": Recipe(optimizer="adam", lr=1e-3)}

    def build(self) -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                             nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                             nn.Flatten(), nn.Linear(32 * 16 * 16, 10))
