"""What a compiled Triton kernel's PTX, TTGIR and ptxas report say about it.

Pure text readers for ``refbench.kernelbench.static``: register and spill figures
from ptxas's ``-v`` report, the width of every global load (``ld.global``,
``cp.async``, bulk tensor copies) and whether it sits in a loop, whether the
dot lowered to Hopper's ``wgmma``, whether the loop around the dot is
software-pipelined, and how many blocks fit on one multiprocessor.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# Per-SM limits of the targets the static check knows (CUDA programming guide, compute capability table).
TARGETS = {
    "sm_90": {"capability": 90, "registers": 65536, "register_unit": 256, "max_warps": 64, "max_blocks": 32,
              "shared_per_sm": 233472, "shared_per_block": 232448, "shared_reserved": 1024},
}

_RESOURCES = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_REGISTERS = re.compile(r"Used (\d+) registers")
_LABEL = re.compile(r"^(\$L__BB\d+_\d+):")
_BRANCH = re.compile(r"\bbra(?:\.uni)?\s+(\$L__BB\d+_\d+);")
_LD_GLOBAL = re.compile(r"\bld\.global((?:\.[\w:]+)*)")
_CP_ASYNC = re.compile(r"\bcp\.async\.c[ag]\.shared\.global(?:\.[\w:]+)*\s+\[[^\]]*\],\s*\[[^\]]*\],\s*(0x[0-9a-f]+|\d+)")
_BULK_TENSOR = re.compile(r"\bcp\.async\.bulk\.tensor")
_TYPE = re.compile(r"^[busf](\d+)$")


def ptxas_resources(log: str) -> dict:
    """Registers, stack frame and spill bytes from ptxas's ``-v`` report of one kernel."""
    resources, registers = _RESOURCES.search(log), _REGISTERS.search(log)
    if resources is None or registers is None:
        raise ValueError(f"no ptxas resource report in: {log[-500:]!r}")
    stack, stores, loads = map(int, resources.groups())
    return {"registers": int(registers.group(1)), "stack_bytes": stack, "spill_bytes": stores + loads}


@dataclass(frozen=True)
class GlobalLoad:
    bytes: int  # per thread and instruction; bulk tensor copies count as 16
    in_loop: bool
    kind: str  # "ld", "cp.async" or "tma"


def global_loads(ptx: str) -> list[GlobalLoad]:
    """Every load from global memory in ``ptx``, in order, and whether it lies in a loop
    (between a label and a later branch back to it)."""
    lines = ptx.splitlines()
    labels = {}
    loops = []
    for number, line in enumerate(lines):
        label = _LABEL.match(line.strip())
        if label:
            labels[label.group(1)] = number
        branch = _BRANCH.search(line)
        if branch and branch.group(1) in labels:
            loops.append((labels[branch.group(1)], number))
    loads = []
    for number, line in enumerate(lines):
        found = _load(line)
        if found:
            in_loop = any(start <= number <= end for start, end in loops)
            loads.append(GlobalLoad(found[0], in_loop, found[1]))
    return loads


def _load(line: str) -> tuple[int, str] | None:
    if _BULK_TENSOR.search(line):
        return 16, "tma"
    copy = _CP_ASYNC.search(line)
    if copy:
        return int(copy.group(1), 0), "cp.async"
    ld = _LD_GLOBAL.search(line)
    if ld:
        vector, bits = 1, None
        for part in ld.group(1).split("."):
            if part in ("v2", "v4", "v8"):
                vector = int(part[1])
            elif _TYPE.match(part):
                bits = int(_TYPE.match(part).group(1))
        if bits:
            return vector * bits // 8, "ld"
    return None


def load_widths(ptx: str) -> dict:
    """The widest load, and the narrowest of the main loads: those in loops, or all when there is no loop."""
    loads = global_loads(ptx)
    if not loads:
        return {"widest_load_bytes": None, "narrowest_main_load_bytes": None, "async_copies": False}
    main = [load for load in loads if load.in_loop] or loads
    return {"widest_load_bytes": max(load.bytes for load in loads),
            "narrowest_main_load_bytes": min(load.bytes for load in main),
            "async_copies": any(load.kind != "ld" for load in loads)}


def uses_wgmma(ptx: str) -> bool:
    return "wgmma.mma_async" in ptx


@dataclass(eq=False)
class _Loop:
    parent: "_Loop | None"
    async_copies: int = 0
    waits_in_flight: int = 0  # waits that leave copies or MMAs outstanding
    drains: int = 0  # waits for everything


_DOT = re.compile(r"\b(tt\.dot|ttng\.warp_group_dot|ttng\.tc_gen5_mma)\b(?!_wait)")
_ASYNC_COPY = re.compile(r"\b(ttg\.async_copy_global_to_local|ttng\.async_tma_copy_global_to_local)\b")
_WAIT = re.compile(r"\b(?:ttng\.warp_group_dot_wait|ttg\.async_wait)\b.*?\{(?:pendings|num) = (\d+)")
_TMA_WAIT = re.compile(r"\bttng\.wait_barrier\b")


def pipelining(ttgir: str) -> str:
    """Whether the loop around the dot keeps loads in flight across its iterations.

    ``yes``: the innermost loop holding the dot issues asynchronous copies and
    waits for fewer than all of them, and no loop around it waits for
    everything; ``per outer step``: pipelined, but an enclosing loop drains it
    on each of its steps (a loop over taps around a loop over channels);
    ``no``: loads are synchronous or fully awaited, or a dot is outside any
    loop; ``-``: no dot.
    """
    stack: list[_Loop | None] = []  # the loop each open brace belongs to (None: outside loops)
    dot_loops: list[_Loop] = []
    for line in ttgir.splitlines():
        loop = stack[-1] if stack else None
        if _DOT.search(line):
            if loop is None:
                return "no"
            if not any(known is loop for known in dot_loops):
                dot_loops.append(loop)
        if loop is not None:
            loop.async_copies += bool(_ASYNC_COPY.search(line))
            wait = _WAIT.search(line)
            if wait:
                loop.waits_in_flight += int(wait.group(1)) > 0
                loop.drains += int(wait.group(1)) == 0
            loop.waits_in_flight += bool(_TMA_WAIT.search(line))
        opened = line.count("{") - line.count("}")
        if opened > 0:
            stack += [_Loop(loop) if "scf.for" in line else loop] * opened
        del stack[max(0, len(stack) + min(opened, 0)):]
    if not dot_loops:
        return "-"
    verdicts = [_verdict(loop) for loop in dot_loops]
    return next(v for v in ("no", "per outer step", "yes") if v in verdicts)


def _verdict(loop: _Loop) -> str:
    if not (loop.async_copies and loop.waits_in_flight):
        return "no"
    outer = loop.parent
    while outer is not None:
        if outer.drains:
            return "per outer step"
        outer = outer.parent
    return "yes"


def blocks_per_sm(target: str, *, registers: int, shared_bytes: int, num_warps: int) -> int:
    """How many blocks of this kernel one multiprocessor holds at once (registers, shared memory, warps)."""
    limits = TARGETS[target]
    unit = limits["register_unit"]
    per_warp = -(-registers * 32 // unit) * unit
    by_registers = limits["registers"] // (per_warp * num_warps)
    by_shared = limits["shared_per_sm"] // (shared_bytes + limits["shared_reserved"])
    by_warps = limits["max_warps"] // num_warps
    return max(0, min(limits["max_blocks"], by_registers, by_shared, by_warps))
