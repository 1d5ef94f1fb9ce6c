"""``refbench kernels softmax --tune-tiles``: measure the softmax row kernel's tile table.

For each direction, dtype and power-of-two row length, every candidate tile
(rows per program, warps) of the row kernel is timed on a tensor of at least
four times the L2, next to the tile the rule in ``refbench.kernels.softmax`` picks, and
the fastest goes into ``kernels/softmax_tiles.json``, which the kernels read
in place of the rule. On the CPU the candidates run in the interpreter on a
few rows, which proves the path and measures nothing: a CPU run must name
another file.
"""
from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Iterator, Sequence

import torch

from refbench.kernelbench.timing import l2_cache_bytes, on_gpu, time_ms
from refbench.errors import RefbenchError

# The gpu-check row lengths that take the row kernel (65536 fp32 takes the long-row kernel).
DEFAULT_ROWS = (128, 1024, 4096, 16384)
_ELEMENTS = (1024, 2048, 4096, 8192, 16384, 32768)
_WARPS = (4, 8, 16, 32)


def candidates(n: int, warps_choices: Sequence[int] = _WARPS) -> Iterator[tuple[int, int]]:
    """(rows per program, warps) worth timing for rows of ``n``: 4 to 64 elements a thread."""
    import triton

    block_n = triton.next_power_of_2(n)
    for elements in sorted({max(e, block_n) for e in _ELEMENTS}):
        for warps in warps_choices:
            if 4 <= elements // (32 * warps) <= 64:
                yield elements // block_n, warps


def tune_row_tiles(*, device: str, dtypes: Sequence[str] = ("float32", "bfloat16"),
                   directions: Sequence[str] = ("fwd", "bwd"), rows: Sequence[int] = DEFAULT_ROWS,
                   out: str | Path | None = None, m: int | None = None,
                   warps_choices: Sequence[int] = _WARPS) -> list[dict]:
    """Time every candidate tile per (direction, dtype, row length); write the fastest to ``out``
    (default: the kernels' own table, GPU only) and return the table's entries. ``before_ms``
    is the tile the kernels chose before this run, ``m`` the rows (default: 4x the L2)."""
    import importlib

    softmax = importlib.import_module("refbench.kernels.softmax")
    if out is None:
        if not on_gpu(device):
            raise RefbenchError("tiles timed on the CPU mean nothing: name another file with --out "
                                "(or tune on a GPU, which writes kernels/softmax_tiles.json)")
        out = softmax.TILES_FILE
    entries = []
    for dtype_name in dtypes:
        dtype = getattr(torch, dtype_name)
        for n in rows:
            rows_m = m or max(64, 4 * l2_cache_bytes(device) // (n * dtype.itemsize))
            x = torch.randn(rows_m, n, device=device, dtype=dtype)
            y = softmax.softmax_forward(x)
            dy = torch.randn_like(y)
            for direction in directions:
                def run(tile, direction=direction):
                    if direction == "fwd":
                        return softmax.softmax_forward(x, tile=tile)
                    return softmax.softmax_backward(dy, y, tile=tile)

                timed = {tile: time_ms(lambda: run(tile), device) for tile in candidates(n, warps_choices)}
                best = min(timed, key=timed.get)
                entries.append({"direction": direction, "itemsize": dtype.itemsize,
                                "block_n": softmax._row_config(rows_m, n, direction, dtype)["BLOCK_N"],
                                "block_m": best[0], "num_warps": best[1], "time_ms": timed[best],
                                "before_ms": time_ms(lambda: run(None), device), "rows": rows_m})
    source = torch.cuda.get_device_name(device) if on_gpu(device) else "cpu (interpreter: not a measurement)"
    Path(out).write_text(json.dumps({"source": source, "date": _dt.date.today().isoformat(), "tiles": entries},
                                    indent=1) + "\n")
    softmax._measured_tiles.cache_clear()
    return entries
