"""The Ray executor: each item a task of a Ray cluster, on a node that has what it needs.

A task asks for the item's CPUs and GPU (``Needs``), the custom resources
of the placement, and a node with the placement's labels (Ray's
``label_selector``); it runs the function on its node and streams back
where it runs (its node), the node's ``env`` and the result, so that an
item lost on the way is named by its node and filed under its machine.

Retries: Ray retries a task after a system failure (``max_retries``), but
cannot tell a lost node from a killed worker, and a killed worker can be
the cell's own doing (Ray's memory monitor kills the worker whose child
filled the node's memory). So every task runs with ``max_retries=0`` (and
``retry_exceptions=False``: a cell's own failure comes back as its
record, not as an exception), and an item whose node was lost
(``NodeDiedError``: the node was preempted, rebooted, its raylet died) is
submitted again, ``LOST_NODE_RETRIES`` times, on a node that is alive. A
killed worker, a node lost once more, Ray's memory monitor (status
``oom``) or refbench failing on the node end the item as a record (``Lost``)
that names the node; ``--resume`` measures such a cell again.

Killing: a cluster this executor starts (no address) is started after
refbench.lifeline's watcher, so every one of its processes (GCS, raylet,
agents, workers, and the cells they start) carries the command's mark and
is killed should the command be killed with SIGKILL; it is stopped when the
executor closes. Given an address, the driver only disconnects, and a
killed driver's job ends by itself: Ray kills the job's workers, and each
cell dies with its worker (refbench.lifeline.die_with); the cluster stays.

Ray is imported here, when an executor is opened: nothing on the GPU
machine's path imports this module.
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from refbench.errors import RefbenchError
from refbench.lifeline import watch_children
from refbench.run.executors import Lost, Needs, Placement, last

LOST_NODE_RETRIES = 1
CONNECT_TIMEOUT_S = 10.0
INSTALL = "pip install 'refbench[ray]' (or pip install 'ray>=2.49')"
_ERROR_CHARS = 2000


def import_ray():
    """The ray module, or one line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise RefbenchError(f"--executor ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


def _on_node(function: Callable[[Any], Iterator[Any]], item: Any) -> Iterator[Any]:
    """The task: the node it runs on, then what the function yields (its machine, its result)."""
    import ray

    yield {"host": socket.gethostname(), "ip": ray.util.get_node_ip_address(),
           "node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}
    yield from function(item)


@dataclass
class _Task:
    """One item on its way: its generator of results, and what it has said so far."""

    item: Any
    needs: Needs
    function: Callable[[Any], Iterator[Any]]
    stream: Any = None
    node: dict[str, Any] | None = None
    env: dict[str, Any] | None = None
    lost_nodes: list[str] = field(default_factory=list)     # each lost node, in words
    lost_ids: set[str] = field(default_factory=set)         # and by Ray node id


class RayExecutor:
    remote = True

    def __init__(self, ray, placement: Placement, address: str | None):
        self.ray, self.placement = ray, placement
        self.cluster = f"the Ray cluster at {address}" if address else "the Ray cluster started on this machine"
        self._remote = ray.remote(_on_node)

    @classmethod
    @contextlib.contextmanager
    def connect(cls, placement: Placement) -> Iterator["RayExecutor"]:
        """Connected to the cluster at the placement's address (else ``$RAY_ADDRESS``, else a cluster started on
        this machine) for the length of a block. A process already connected keeps its connection."""
        ray = import_ray()
        address = placement.address or os.environ.get("RAY_ADDRESS")
        ours = not ray.is_initialized()
        if ours:
            _init(ray, address)
        try:
            executor = cls(ray, placement, address if ours else ray.get_runtime_context().gcs_address)
            executor._check_placement()
            yield executor
        finally:
            if ours:
                ray.shutdown()

    def where(self) -> str:
        return f"any node of {self.cluster}{self._asked()}"

    def _asked(self) -> str:
        """ " with LABEL=VALUE, RESOURCE=N" for the placement's labels and resources ("" when none)."""
        asked = [f"{k}={v}" for k, v in self.placement.labels.items()] + \
                [f"{k}={v:g}" for k, v in self.placement.resources.items()]
        return f" with {', '.join(asked)}" if asked else ""

    def cuda_available(self) -> bool:
        return any(n["Resources"].get("GPU", 0) >= 1 for n in self._nodes())

    def map(self, function: Callable[[Any], Iterator[Any]], items: Iterable[Any], *,
            needs: Callable[[Any], Needs | None], lost: Callable[[Any, Lost], Any]) -> Iterator[tuple[Any, Any]]:
        """Items that need nothing first, done here; then every other item as a task, each yielded as it ends."""
        here, tasks = [], []
        for item in items:
            need = needs(item)
            if need is None:
                here.append(item)
            else:
                tasks.append(_Task(item, need, function))
        nodes = self._nodes()
        for task in tasks:
            self._check_feasible(task.needs, nodes)
        for item in here:
            yield item, last(function(item))
        running = {}
        try:
            for task in tasks:
                running[self._submit(task, nodes)] = task
            while running:
                ready, _ = self.ray.wait(list(running), num_returns=1)
                for stream in ready:
                    task = running.pop(stream)
                    done, result = self._next(stream, task, lost)
                    if done:
                        yield task.item, result
                    elif result is not None:      # the node was lost: submitted again
                        running[result] = task
                    else:
                        running[stream] = task
        finally:
            for stream in running:
                with contextlib.suppress(Exception):
                    self.ray.cancel(stream, force=True)

    # ----- one task -----

    def _submit(self, task: _Task, nodes: list[dict]) -> Any:
        cpus = task.needs.cpus
        if cpus is None:     # every CPU of the largest node that can take it
            cpus = max(n["Resources"].get("CPU", 0) for n in nodes if n["Resources"].get("GPU", 0) >= task.needs.gpus)
        options: dict[str, Any] = {"num_cpus": cpus, "num_gpus": task.needs.gpus, "num_returns": "streaming",
                                   "max_retries": 0, "retry_exceptions": False}
        if self.placement.resources:
            options["resources"] = dict(self.placement.resources)
        if self.placement.labels:
            options["label_selector"] = dict(self.placement.labels)
        task.stream = self._remote.options(**options).remote(task.function, task.item)
        task.node = task.env = None
        return task.stream

    def _next(self, stream, task: _Task, lost: Callable[[Any, Lost], Any]) -> tuple[bool, Any]:
        """Take the stream's next value: (True, the item's result) when it has one, else (False, a new stream when
        the item was submitted again, or None while it runs)."""
        ray = self.ray
        try:
            value = ray.get(next(stream))
        except StopIteration:
            return True, lost(task.item, Lost("error", f"the Ray task ended on {self._node_text(task)} without a "
                                                       f"result; `--resume` measures it again", task.env))
        except ray.exceptions.NodeDiedError as exc:
            task.lost_nodes.append(self._node_text(task) if task.node else _first_line(exc))
            task.lost_ids.add(task.node["node_id"] if task.node else _node_id(exc))
            nodes = [n for n in self._nodes() if n["NodeID"] not in task.lost_ids]   # the lost may look alive yet
            if len(task.lost_nodes) <= LOST_NODE_RETRIES and self._feasible(task.needs, nodes):
                return False, self._submit(task, nodes)
            times = "once" if len(task.lost_nodes) == 1 else f"{len(task.lost_nodes)} times"
            return True, lost(task.item, Lost("error", f"the Ray node it ran on was lost {times} "
                                                       f"({'; '.join(task.lost_nodes)}), and no other node took it; "
                                                       f"`--resume` measures it again", task.env))
        except ray.exceptions.OutOfMemoryError as exc:
            return True, lost(task.item, Lost("oom", f"Ray's memory monitor killed the worker on "
                                                     f"{self._node_text(task)}, the node being out of memory: "
                                                     f"{_first_line(exc)}", task.env))
        except ray.exceptions.WorkerCrashedError:
            return True, lost(task.item, Lost("error", f"the Ray worker running it on {self._node_text(task)} died "
                                                       f"without a result (killed from outside, or by the kernel's "
                                                       f"out-of-memory killer); `--resume` measures it again",
                                              task.env))
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            return True, lost(task.item, Lost("error", _tail(f"refbench failed on {self._node_text(task)}: "
                                                             f"{type(cause).__name__}: {cause}"), task.env))
        except ray.exceptions.RayError as exc:
            return True, lost(task.item, Lost("error", _tail(f"Ray lost the task on {self._node_text(task)}: "
                                                             f"{type(exc).__name__}: {exc}"), task.env))
        if task.node is None:
            task.node = value
        elif task.env is None:
            task.env = value
        else:
            return True, value
        return False, None

    # ----- the cluster -----

    def _nodes(self) -> list[dict]:
        """The alive nodes that have the placement's labels and custom resources."""
        return [n for n in self.ray.nodes() if n.get("Alive") and self._placed(n)]

    def _placed(self, node: dict) -> bool:
        labels, resources = node.get("Labels") or {}, node.get("Resources") or {}
        return (all(labels.get(k) == v for k, v in self.placement.labels.items())
                and all(resources.get(k, 0) >= v for k, v in self.placement.resources.items()))

    def _check_placement(self) -> None:
        """Refuse labels and resources no alive node has, naming what the nodes have."""
        if self._nodes():
            return
        nodes = []
        for node in self.ray.nodes():
            if node.get("Alive"):
                has = [f"{k}={v}" for k, v in (node.get("Labels") or {}).items() if k != "ray.io/node-id"]
                has += [f"{k}={v:g}" for k, v in (node.get("Resources") or {}).items()
                        if not k.startswith(("node:", "memory", "object_store_memory"))]
                nodes.append(f"{node.get('NodeManagerHostname')}: {', '.join(has) or 'nothing'}")
        raise RefbenchError(f"no node of {self.cluster} has what --node-label and --node-resource "
                            f"ask for ({self._asked().removeprefix(' with ')}); its nodes have: {'; '.join(nodes)}")

    @staticmethod
    def _feasible(needs: Needs, nodes: list[dict]) -> bool:
        """Whether one of ``nodes`` has the CPUs and GPUs the item needs."""
        return any(n["Resources"].get("CPU", 0) >= (needs.cpus or 0) and n["Resources"].get("GPU", 0) >= needs.gpus
                   for n in nodes)

    def _check_feasible(self, needs: Needs, nodes: list[dict]) -> None:
        """Refuse an item no node can ever take (Ray would keep it waiting for a node that never comes)."""
        if not self._feasible(needs, nodes):
            cpus = needs.cpus or 0
            gpus = f" and {needs.gpus:g} GPU" if needs.gpus else ""
            raise RefbenchError(f"a cell asks for {cpus:g} CPUs{gpus} (a CPU per --threads), and no node of "
                                f"{self.cluster}{self._asked()} has as many: give fewer --threads, or "
                                f"add such a node")

    def _node_text(self, task: _Task) -> str:
        node = task.node
        if node is None:
            return "a node that had not yet said which"
        return f"{node['host']} ({node['ip']}, Ray node {node['node_id'][:12]}, worker pid {node['pid']})"


def _init(ray, address: str | None) -> None:
    """``ray.init``: a new cluster on this machine that dies with this process, or the one at ``address``. Ray
    sets its own SIGTERM handler; refbench's (SIGTERM ends a command as Ctrl-C does) is put back."""
    if address is not None:
        _check_reachable(address)
    handler = signal.getsignal(signal.SIGTERM)
    try:
        if address is None:
            watch_children()
            ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level="WARNING")
        else:
            ray.init(address=address, log_to_driver=False, logging_level="WARNING")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        if address is None:
            raise RefbenchError(f"cannot start a Ray cluster on this machine: {_first_line(exc)}; start one with "
                                f"`ray start --head` and give its address with --address") from None
        raise RefbenchError(f"cannot reach the Ray cluster at {address}: {_first_line(exc)}; start it with "
                            f"`ray start --head` there, or give the address it printed with --address") from None
    finally:
        if threading.current_thread() is threading.main_thread() and handler is not None:
            signal.signal(signal.SIGTERM, handler)


def _check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse a HOST:PORT address nothing answers at (ray.init would retry it for many minutes)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return      # "auto", or a form Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise RefbenchError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}; start it with "
                            f"`ray start --head` there, or give the address it printed with --address") from None


def _node_id(exc: BaseException) -> str:
    """The node id a NodeDiedError names ("... node ID: <hex>. ..."), or "" where it names none."""
    match = re.search(r"node ID: ([0-9a-f]+)", str(exc))
    return match.group(1) if match else ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _tail(text: str) -> str:
    return text if len(text) <= _ERROR_CHARS else text[:_ERROR_CHARS] + "..."
