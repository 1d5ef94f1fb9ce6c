"""The static sm_90 check in CI: every config the pruner keeps for the documents' conv layers and
for each softmax row-length class compiles for sm_90 (no GPU: Triton's compiler and the ptxas in
its wheel, outside the interpreter this test run has on) without spills, with wgmma, and with
main-loop loads as wide as the layout allows. Faults injected into the same run are caught."""
import json

import pytest

from refbench import cli
from refbench.kernelbench import static
from refbench.kernelbench.runs import conv_layers
from refbench.errors import RefbenchError

# The CI run checks bf16 in both layouts (about 110 compiles, two minutes on two busy cores); TF32
# takes as many again and runs under `slow`. fp32 with TF32 off (an FMA dot, not torch's default)
# is in `refbench kernels --static sm_90` only: three of its kept configs still spill (40-296 bytes).
CI_PRECISIONS = ("bf16", "bf16-channels-last")
LAYER = next(layer for layer in conv_layers() if layer["name"] == "resnet18_cifar.stages.0.conv1")
FAULTS = [
    # 256 x 256 fp32 accumulators on four warps: 512 a thread, far past 255 registers.
    static.Case("conv2d", "fault: spilling tile",
                {"layer": LAYER, "batch": 128, "precision": "bf16-channels-last", "direction": "fwd"},
                override={"BLOCK_M": 256, "BLOCK_N": 256, "BLOCK_K": 64, "num_warps": 4, "num_stages": 2}),
]
# Rows of 1000 fp32 allow 16-byte loads (length and stride are multiples of 4). The row kernel gets
# them only because it is told VEC; launched with VEC=1, as it was before the length and stride
# were passed divided by VEC, it loads scalars, and the check must say so.
(ROWS_OF_1000,) = static.softmax_cases(ops=("softmax",), directions=("fwd",), dtypes=("float32",), rows=(1000,))
SCALAR_ROWS = static.Case("softmax", "fault: rows of 1000 loaded as scalars", ROWS_OF_1000.spec,
                          override={"VEC": 1})


@pytest.fixture(scope="module")
def rows():
    cases = static.conv_cases(conv_layers(), precisions=CI_PRECISIONS) + static.softmax_cases(ops=("softmax",))
    return static.static_check(cases + FAULTS + [SCALAR_ROWS], jobs=2)


@pytest.mark.slow
def test_tf32_kernels_compile_clean_for_sm90():
    rows = static.static_check(static.conv_cases(conv_layers(), precisions=("tf32",)), jobs=2)
    assert rows and not _failures(rows), _failures(rows)
    assert all(r["wgmma"] for r in rows)



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
    # Every row loads as wide as its length allows: 16 bytes, or single elements for the odd vocabulary.
    assert all(r["narrowest_main_load_bytes"] == r["vector_bytes"] for r in softmax)
    odd = [r for r in softmax if r["spec"]["N"] % 2]
    assert odd and all(r["function"].endswith("_long") and r["vector_bytes"] < 16 for r in odd)


def test_injected_spill_is_caught(rows):
    (row,) = [r for r in rows if r["case"] == "fault: spilling tile"]
    assert row["spill_bytes"] > 0 and any(p.startswith("spills") for p in row["problems"]), row


def test_scalar_loads_are_caught(rows):
    (row,) = [r for r in rows if r["case"] == SCALAR_ROWS.name]
    assert row["vector_bytes"] == 16 and row["narrowest_main_load_bytes"] == 4
    assert "4-byte loads in the main loop where the layout allows 16-byte ones" in row["problems"], row
    # The same rule on a clean row with its main loads narrowed.
    clean = next(r for r in rows if r["kernel"] == "conv2d" and r["vector_bytes"] == 16 and not r["problems"])
    assert static.problems({**clean, "narrowest_main_load_bytes": 2}) == [
        "2-byte loads in the main loop where the layout allows 16-byte ones"]


def test_table_and_records(rows):
    lines = static.table_rows(rows)
    assert len(lines) == len({r["compile"] for r in rows}) and sum(line["cases"] for line in lines) == len(rows)
    records = static.static_records(rows, run_id="test", env={})
    statuses = {r["variant"]["case"]: r["status"] for r in records}
    assert statuses["fault: spilling tile"] == "failed" and "spills" in next(
        r["error"] for r in records if r["variant"]["case"] == "fault: spilling tile")
    assert all(r["mode"] == "kernel" and r["variant"]["static"] == "sm_90" for r in records)


def test_cli_static_prints_table_records_and_fails_on_problems(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(static, "document_cases", lambda: [SCALAR_ROWS])
    out = tmp_path / "static.jsonl"
    assert cli.main(["kernels", "--static", "sm_90", "--out", str(out), "--jobs", "1"]) == 1
    printed = capsys.readouterr().out
    assert "_forward_rows" in printed and "4-byte loads" in printed and "1 with problems" in printed
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["status"] == "failed" and record["metrics"]["registers"] > 0


def test_unknown_target_is_one_clear_error():
    with pytest.raises(RefbenchError, match="unknown static target 'sm_80'"):
        static.static_check([], target="sm_80")
