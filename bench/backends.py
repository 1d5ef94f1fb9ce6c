"""Named backends: where and how a workload's step runs.

A backend name is one base device (``cpu`` or ``cuda``) optionally followed
by modifiers joined with "+". ``resolve`` checks the name; ``skip_reason``
says why a backend cannot run a workload in a mode (recorded as ``skipped``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from reference_models import RefbenchError

BASES = ("cpu", "cuda")


@dataclass(frozen=True)
class Backend:
    name: str
    device: str

    def skip_reason(self) -> str | None:
        if self.device == "cuda" and not torch.cuda.is_available():
            return "no CUDA device on this machine"
        return None


def resolve(name: str) -> Backend:
    """Parse a backend name such as ``cpu`` or ``cuda``; unknown names raise RefbenchError."""
    parts = name.split("+")
    if parts[0] not in BASES or len(parts) > 1:
        raise RefbenchError(f"unknown backend {name!r}; known: {', '.join(BASES)}")
    return Backend(name=name, device=parts[0])
