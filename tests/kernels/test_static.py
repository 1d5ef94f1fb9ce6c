"""The static sm_90 check in CI: every config the pruner keeps for the documents' conv layers and
for each softmax row-length class compiles for sm_90 (no GPU: Triton's compiler and the ptxas in
its wheel, outside the interpreter this test run has on) without spills, with wgmma, and with
main-loop loads as wide as the layout allows. Faults injected into the same run are caught."""
import json

import pytest

from bench import cli
from bench import kernel_static as static
from bench.kernel_runs import conv_layers
from reference_models import RefbenchError

# bf16 (NCHW and channels-last share the fast path's kernels) and tf32 are the precisions a GPU
# run uses by default; fp32 without TF32 (an FMA dot) is in `refbench kernels --static sm_90`.
CI_PRECISIONS = ("tf32", "bf16", "bf16-channels-last")
LAYER = next(layer for layer in conv_layers() if layer["name"] == "resnet18_cifar.stages.0.conv1")
FAULTS = [
    # 256 x 256 fp32 accumulators on four warps: 512 a thread, far past 255 registers.
    static.Case("conv2d", "fault: spilling tile",
                {"layer": LAYER, "batch": 128, "precision": "bf16-channels-last", "direction": "fwd"},
                override={"BLOCK_M": 256, "BLOCK_N": 256, "BLOCK_K": 64, "num_warps": 4, "num_stages": 2}),
    # Rows of 1000 fp32 allow 16-byte loads, but only if the kernel is told the length's divisibility.
    static.Case("softmax", "fault: undeclared row divisibility",
                {"op": "softmax", "direction": "fwd", "M": 8192, "N": 1000, "dtype": "float32"},
                override={"VEC": 1}),
]


@pytest.fixture(scope="module")
def rows():
    cases = static.conv_cases(conv_layers(), precisions=CI_PRECISIONS) + static.softmax_cases(ops=("softmax",))
    return static.static_check(cases + FAULTS, jobs=2)


def _failures(rows):
    return "\n".join(f"{r['case']} [{r['config']}]: {'; '.join(r['problems'])}" for r in rows if r["problems"])


def test_documents_kernels_compile_clean_for_sm90(rows):
    kept = [r for r in rows if not r["case"].startswith("fault")]
    assert not _failures(kept), _failures(kept)
    conv = [r for r in kept if r["kernel"] == "conv2d"]
    assert {r["spec"]["direction"] for r in conv} == set(static.CONV_DIRECTIONS)
    assert all(r["wgmma"] for r in conv)
    # The channels-last main loops load 16 bytes a thread and keep their loads in flight across taps.
    fast = [r for r in conv if r["function"] == "_conv_gemm_kernel" and r["vector_bytes"] == 16]
    assert fast and all(r["narrowest_main_load_bytes"] == 16 and r["pipelined"] == "yes" for r in fast)
    softmax = [r for r in kept if r["kernel"] == "softmax"]
    assert {r["spec"]["N"] for r in softmax} == set(static.SOFTMAX_ROWS)


def test_injected_spill_is_caught(rows):
    (row,) = [r for r in rows if r["case"] == "fault: spilling tile"]
    assert row["spill_bytes"] > 0 and any(p.startswith("spills") for p in row["problems"]), row


def test_injected_scalar_loads_are_caught(rows):
    (row,) = [r for r in rows if r["case"] == "fault: undeclared row divisibility"]
    assert row["vector_bytes"] == 16
    assert "4-byte loads in the main loop where the layout allows 16-byte ones" in row["problems"], row


def test_table_and_records(rows):
    lines = static.table_rows(rows)
    assert len(lines) == len({r["compile"] for r in rows}) and sum(line["cases"] for line in lines) == len(rows)
    records = static.static_records(rows, run_id="test", env={})
    statuses = {r["variant"]["case"]: r["status"] for r in records}
    assert statuses["fault: spilling tile"] == "failed" and "spills" in next(
        r["error"] for r in records if r["variant"]["case"] == "fault: spilling tile")
    assert all(r["mode"] == "kernel" and r["variant"]["static"] == "sm_90" for r in records)


def test_cli_static_prints_table_records_and_fails_on_problems(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(static, "document_cases", lambda: FAULTS[1:])
    out = tmp_path / "static.jsonl"
    assert cli.main(["kernels", "--static", "sm_90", "--out", str(out), "--jobs", "1"]) == 1
    printed = capsys.readouterr().out
    assert "_forward_rows" in printed and "4-byte loads" in printed and "1 with problems" in printed
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["status"] == "failed" and record["metrics"]["registers"] > 0


def test_unknown_target_is_one_clear_error():
    with pytest.raises(RefbenchError, match="unknown static target 'sm_80'"):
        static.static_check([], target="sm_80")
