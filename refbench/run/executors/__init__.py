"""Where the units of a run (a matrix's cells, a convergence group's seeds) are measured.

An executor takes a function and the items to apply it to and yields each
item with its result as the result exists:

- ``local``: one after another in this process, in the order given (the
  matrix's cells each still run in their own child process, as always);
- ``ray``: each item a task of a Ray cluster, on a node that has what the
  item needs (``Needs``: CPUs, a GPU) and the node labels and custom
  resources asked for (``Placement``), results in the order they end.
  Without an address it starts a cluster on this machine, which dies with
  the command.

Another scheduler (Slurm through submitit, say) is one more module of the
same shape: submit each item with its needs, yield each result as its job
ends, and turn a job the scheduler lost into ``lost``'s record.

The function is a generator: it yields a description of the machine it runs
on (the record's ``env``) when it starts, then its result. A remote executor
sends the function and the item to the node, so both must be picklable (a
module-level function, a frozen dataclass). An item whose ``needs`` is None
needs no machine at all (a skipped cell) and is done where the driver is.
When a remote executor loses an item (its worker killed, its node lost), the
caller's ``lost`` turns what is known (``Lost``) into the item's result, so
that every item has one.

An executor is opened with ``open_executor`` and closed when the block
ends. This module imports nothing heavy: the command line builds its
options from it before torch is imported.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Protocol, TypeVar

from refbench.errors import RefbenchError

EXECUTORS = ("local", "ray")
Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(frozen=True)
class Needs:
    """What one item needs of a node: ``cpus`` (None: every CPU of the largest node that can take it) and
    ``gpus``."""

    cpus: float | None = 1
    gpus: float = 0


@dataclass(frozen=True)
class Lost:
    """An item a remote executor lost: the status its record takes (``error``, or ``oom`` where the cluster says
    the node ran out of memory), why in words naming the node, and that node's ``env`` where it said it."""

    status: str
    error: str
    env: dict[str, Any] | None = None


@dataclass(frozen=True)
class Placement:
    """Where a remote executor's items may run: the cluster's address (None: a cluster started on this machine),
    node labels every node that runs an item must have, custom resources every item asks for."""

    address: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    resources: dict[str, float] = field(default_factory=dict)


class Executor(Protocol):
    remote: bool    # items run in other processes, maybe other machines: function and items travel pickled

    def where(self) -> str:
        """Where items run, in words: "this machine", "the Ray cluster at ..."."""

    def cuda_available(self) -> bool:
        """Whether an item that needs a GPU can run anywhere this executor reaches."""

    def map(self, function: Callable[[Item], Iterator[Any]], items: Iterable[Item], *,
            needs: Callable[[Item], Needs | None],
            lost: Callable[[Item, Lost], Result]) -> Iterator[tuple[Item, Result]]:
        """Each item with its result (module docstring)."""


@contextlib.contextmanager
def open_executor(name: str = "local", placement: Placement | None = None) -> Iterator[Executor]:
    """The executor ``name`` for the length of a block; a Ray cluster it started is stopped when the block ends."""
    placement = placement or Placement()
    if name not in EXECUTORS:
        raise RefbenchError(f"unknown executor {name!r}; use one of {', '.join(EXECUTORS)}")
    if name == "local":
        if placement != Placement():
            raise RefbenchError("--address, --node-label and --node-resource place cells on a cluster: add "
                                "--executor ray, or drop them")
        from refbench.run.executors.local import LocalExecutor

        yield LocalExecutor()
        return
    from refbench.run.executors.ray_cluster import RayExecutor

    with RayExecutor.connect(placement) as executor:
        yield executor


def last(steps: Iterator[Any]) -> Any:
    """The result of a unit of work: the last thing its generator yields."""
    result = None
    for result in steps:
        pass
    return result
