"""The softmax kernel sweep end to end on the CPU (tiny shapes, Triton interpreter)."""
import json
import sys

import pytest
import torch

from refbench.kernelbench.softmax import run_sweep
from refbench.records.schema import FIELDS
from refbench.kernels.softmax import _row_kernel_max_n

pytestmark = pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")


def _sweep(**overrides):
    kwargs = dict(device="cpu", dtypes=["float32"], shapes="quick", run_id="test-run", env={"host": "test"})
    return run_sweep(**{**kwargs, **overrides})


def test_quick_cpu_sweep_records():
    seen = []
    records = _sweep(on_record=seen.append)
    assert seen == records
    measured = [r for r in records if r["status"] != "skipped"]
    # softmax and log-softmax x three shapes x forward and backward, for torch and triton,
    # and Liger-Kernel's softmax (it has no log-softmax).
    assert len(measured) == 2 * 3 * 2 * 2 + 3 * 2
    assert {r["backend"] for r in measured} == {"torch", "triton", "liger"}
    assert {r["workload"] for r in measured if r["backend"] == "liger"} == {"softmax"}
    assert any(r["variant"]["N"] > _row_kernel_max_n(torch.float32, rows_held=1) for r in measured)
    for r in records:
        assert set(r) == set(FIELDS)
        assert r["mode"] == "kernel" and r["run_id"] == "test-run" and r["env"] == {"host": "test"}
        assert r["workload"] in ("softmax", "log_softmax")
        assert set(r["variant"]) == {"M", "N", "dtype", "direction"} and r["variant"]["dtype"] == "float32"
    for r in measured:
        assert r["status"] == "ok", r["error"]
        m = r["metrics"]
        assert m["time_ms"] > 0 and m["gbps"] > 0 and m["copy_gbps"] > 0
        assert m["max_abs_err"] < 1e-5
    reasons = {(r["backend"], r["workload"]): r["error"] for r in records if r["status"] == "skipped"}
    assert set(reasons) == {("compile", "softmax"), ("compile", "log_softmax"), ("quack", "softmax"),
                            ("quack", "log_softmax"), ("liger", "log_softmax")}
    assert "GPU only" in reasons["compile", "softmax"] and "CUDA only" in reasons["quack", "softmax"]
    assert "no log-softmax" in reasons["liger", "log_softmax"]
    assert all(r["metrics"]["bytes_over_l2"] > 0 for r in measured)


def test_absent_peer_is_a_skipped_record_with_the_reason(monkeypatch):
    for name in ["liger_kernel", *[m for m in sys.modules if m.startswith("liger_kernel.")]]:
        monkeypatch.setitem(sys.modules, name, None)  # importing it now raises ImportError
    records = _sweep(ops=("softmax",), directions=("fwd",))
    liger = [r for r in records if r["backend"] == "liger"]
    assert len(liger) == 3 and all(r["status"] == "skipped" for r in liger)
    assert "liger-kernel is not installed" in liger[0]["error"]


def test_failing_cell_becomes_error_record(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("kernel exploded")

    # sys.modules: the package attribute refbench.kernels.softmax is the function, not the module.
    monkeypatch.setattr(sys.modules["refbench.kernels.softmax"], "softmax_forward", broken)
    records = _sweep(ops=("softmax",), directions=("fwd",))
    triton = [r for r in records if r["backend"] == "triton"]
    assert all(r["status"] == "ok" for r in records if r["backend"] == "liger")
    assert len(triton) == 3 and all(r["status"] == "error" for r in triton)
    assert "RuntimeError: kernel exploded" in triton[0]["error"]
    assert all(r["status"] == "ok" for r in records if r["backend"] == "torch")


def test_unknown_op_is_refused():
    with pytest.raises(ValueError, match="unknown op"):
        _sweep(ops=("softmin",))


def test_tile_table_is_measured_written_and_read(tmp_path, monkeypatch):
    import importlib

    from refbench.kernelbench.tiles import tune_row_tiles

    softmax = importlib.import_module("refbench.kernels.softmax")
    table = tmp_path / "tiles.json"
    entries = tune_row_tiles(device="cpu", dtypes=("float32",), directions=("fwd",), rows=(2048,), out=table, m=4,
                             warps_choices=(4,))
    (entry,) = entries
    assert (entry["block_n"], entry["num_warps"]) == (2048, 4) and entry["block_m"] in (1, 2, 4)
    assert entry["time_ms"] > 0 and entry["before_ms"] > 0
    # The kernels take a table entry in place of their rule.
    written = json.loads(table.read_text())
    written["tiles"][0].update(block_m=1, num_warps=8)
    table.write_text(json.dumps(written))
    monkeypatch.setattr(softmax, "TILES_FILE", table)
    softmax._measured_tiles.cache_clear()
    try:
        assert softmax._row_config(4096, 2000, "fwd", torch.float32) == {"BLOCK_M": 1, "BLOCK_N": 2048, "num_warps": 8}
        assert softmax._row_config(4096, 2000, "bwd", torch.float32)["BLOCK_M"] == 2  # the rule: 4096 // 2048
        x = torch.randn(5, 2000)
        torch.testing.assert_close(softmax.softmax_forward(x), torch.softmax(x, -1))
    finally:
        softmax._measured_tiles.cache_clear()


def test_cpu_tiles_never_overwrite_the_kernels_table():
    from refbench.kernelbench.tiles import tune_row_tiles
    from refbench.errors import RefbenchError

    with pytest.raises(RefbenchError, match="mean nothing"):
        tune_row_tiles(device="cpu")


def test_planned_cells_are_the_sweeps_cells_and_only_runs_the_chosen_ones():
    from refbench.kernelbench.softmax import planned_cells
    from refbench.records.schema import cell_key

    planned = planned_cells(device="cpu", dtypes=["float32"], shapes="quick")
    assert [cell_key(r) for r in _sweep()] == [cell_key(c) for c in planned]
    chosen = [planned[1], planned[7], planned[-1]]
    records = _sweep(only={cell_key(c) for c in chosen})
    assert [cell_key(r) for r in records] == [cell_key(c) for c in chosen]
    # The GPU check's cells are listed without a GPU: 5 shapes, 2 ops, 2 dtypes, 2 directions, 5 backends.
    gpu = planned_cells(device="cuda", dtypes=["float32", "bfloat16"], shapes="gpu-check")
    assert len(gpu) == 200 and {c["variant"]["M"] for c in gpu} == {8192}
