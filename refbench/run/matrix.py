"""What a run measures: its cells, expanded from the user's matrix.

A ``Matrix`` is the user's request (workloads, backends, modes, batch sizes,
variants) and the ``Settings`` its cells share (refbench.run.settings);
``Matrix.cells()`` expands it into ``Cell`` s, deciding once, here, which
cells a backend cannot run (``Cell.skip``) and resolving each cell's variant
once (the workload's defaults filled in, ``attention=sdpa`` for the ``sdpa``
backend). A Cell travels to the worker as ``to_dict`` and comes back with
``from_dict``; the record of a cell carries the cell's fields.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from refbench.harness import backends
from refbench.records.schema import MATRIX_MODES, cell_key, make_record
from refbench.run.settings import Settings
from refbench.models import get_workload, list_models
from refbench.errors import RefbenchError


@dataclass(frozen=True)
class Cell:
    """One measurement of a matrix: its variant is resolved, and ``skip`` says why it cannot run (None: it can)."""

    workload: str
    backend: str
    mode: str
    batch_size: int
    variant: dict[str, Any] = field(default_factory=dict)
    skip: str | None = None

    def key(self) -> tuple:
        return cell_key(dataclasses.asdict(self))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Cell":
        return cls(**data)

    def __hash__(self) -> int:
        return hash(self.key())

    def record(self, outcome, *, run_id: str, env: dict[str, Any]) -> dict[str, Any]:
        """This cell's record, with what measuring it gave (a refbench.run.throughput.Outcome)."""
        return make_record(run_id=run_id, env=env, workload=self.workload, variant=self.variant, backend=self.backend,
                           mode=self.mode, batch_size=self.batch_size, dataset=outcome.dataset,
                           status=outcome.status, error=outcome.error, metrics=outcome.metrics)


def plan_cell(workload_name: str, backend_name: str, mode: str, batch_size: int,
              variant: dict[str, Any] | None = None, *, cuda_available: bool | None = None,
              where: str = "this machine") -> Cell:
    """The cell, with the one decision on skipping it and its one resolved variant; ``cuda_available`` (default:
    this machine's) says whether ``where`` the cell runs has a CUDA device."""
    workload, backend = get_workload(workload_name), backends.resolve(backend_name)
    variant = dict(variant or {})
    skip = backend.skip_reason(workload, mode, cuda_available=cuda_available, where=where)
    resolved = workload.resolve_variant(**variant) if skip else backend.variant_for(workload, variant)
    return Cell(workload_name, backend_name, mode, batch_size, resolved, skip)


@dataclass
class Matrix:
    """The cells a user asks for: workloads x backends x modes x batch sizes, and the settings they share."""

    workloads: list[str]               # names or shell patterns; "all" is every registered workload
    backends: list[str]
    modes: list[str] = field(default_factory=lambda: list(MATRIX_MODES))
    batch_sizes: list[int] = field(default_factory=lambda: [128])
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    settings: Settings = field(default_factory=Settings)

    def workload_names(self) -> list[str]:
        """Expand "all" and shell patterns against the registry; plain names must be registered."""
        names: list[str] = []
        for item in self.workloads:
            if item == "all" or any(ch in item for ch in "*?["):
                matched = list_models(None if item == "all" else item)
                if not matched:
                    raise RefbenchError(f"no registered workload matches {item!r} (`refbench list` shows them)")
            else:
                get_workload(item)
                matched = [item]
            names += [n for n in matched if n not in names]
        return names

    def validate(self) -> None:
        self.settings.validate()   # first: its imports may register workloads
        if not self.workloads:
            raise RefbenchError("no workloads given; use --workloads NAME,... or all")
        if not self.backends:
            raise RefbenchError("no backends given; use --backends cpu,cpu+compile,...")
        for name in self.backends:
            backends.resolve(name)
        bad_modes = [m for m in self.modes if m not in MATRIX_MODES]
        if bad_modes or not self.modes:
            raise RefbenchError(f"unknown mode {', '.join(bad_modes) or '(none)'}; use {' or '.join(MATRIX_MODES)}")
        bad_sizes = [b for b in self.batch_sizes if not isinstance(b, int) or b < 1]
        if bad_sizes or not self.batch_sizes:
            raise RefbenchError(f"batch sizes must be positive integers, got {bad_sizes or 'none'}")
        names = self.workload_names()
        for name, variant in self.variants.items():
            if name not in names:
                raise RefbenchError(f"--variant {name}:...: {name} is not among the workloads measured "
                                    f"({', '.join(names)}); add it to --workloads or drop the --variant")
            get_workload(name).resolve_variant(**variant)

    def cells(self, *, cuda_available: bool | None = None, where: str = "this machine") -> list[Cell]:
        """Every cell, backend-major (the order ``--shard`` splits; ``cheapest_first`` reorders a budgeted run);
        ``cuda_available`` and ``where`` as ``plan_cell``'s (the machines an executor reaches)."""
        self.validate()
        names = self.workload_names()
        return [plan_cell(w, b, m, bs, self.variants.get(w), cuda_available=cuda_available, where=where)
                for b in self.backends for w in names for m in self.modes for bs in self.batch_sizes]


def cheapest_first(cells: list[Cell]) -> list[Cell]:
    """Each backend's cells ordered by their estimated cost, then dealt out a backend at a time, so that a run
    cut short by its time budget loses the costliest cells of every backend rather than the backends listed
    last. The estimate builds each model once, on the meta device."""
    backends = list(dict.fromkeys(c.backend for c in cells))
    costs: dict[tuple, float] = {}

    def cost(cell: Cell) -> float:
        """Parameters x batch size, three times that to train (forward, backward, update)."""
        key = (cell.workload, json.dumps(cell.variant, sort_keys=True, default=str))
        if key not in costs:
            costs[key] = max(get_workload(cell.workload).parameter_count(**cell.variant), 1)
        return costs[key] * cell.batch_size * (3 if cell.mode == "train" else 1)

    per_backend = [sorted((c for c in cells if c.backend == b), key=cost) for b in backends]
    return [cell for rank in range(max(map(len, per_backend), default=0)) for cells in per_backend
            for cell in cells[rank:rank + 1]]
