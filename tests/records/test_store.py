"""A results file is appended to, never rewritten: a whole last record stays, another program's file is refused."""
import json

import pytest

from refbench.errors import RefbenchError
from refbench.records.schema import make_record
from refbench.records.store import ResultWriter, dumps_record, read_results


def _record(status="ok"):
    return make_record(run_id="r", env={}, workload="mlp", backend="cpu", mode="infer", batch_size=2, status=status)


def test_a_last_record_without_its_newline_is_kept(tmp_path):
    out = tmp_path / "r.jsonl"
    out.write_text(dumps_record(_record()) + "\n" + dumps_record(_record("failed")))     # no newline at the end
    with ResultWriter(out) as writer:
        assert writer.repaired_bytes == 0
        writer.append(_record("error"))
    assert [r["status"] for r in read_results(out)] == ["ok", "failed", "error"]


def test_a_file_of_one_record_without_a_newline_is_kept(tmp_path):
    out = tmp_path / "r.jsonl"
    out.write_text(json.dumps(_record()))            # another writer's key order, no newline
    with ResultWriter(out) as writer:
        writer.append(_record("failed"))
    assert [r["status"] for r in read_results(out)] == ["ok", "failed"]


def test_a_fragment_an_interrupted_run_left_is_cut(tmp_path):
    out = tmp_path / "r.jsonl"
    whole = dumps_record(_record()) + "\n"
    out.write_text(whole + whole[:40])
    with ResultWriter(out) as writer:
        assert writer.repaired_bytes == 40
        writer.append(_record("failed"))
    assert out.read_text().startswith(whole) and len(read_results(out)) == 2


def test_a_file_holding_only_a_fragment_of_a_record_is_cut(tmp_path):
    out = tmp_path / "r.jsonl"
    out.write_text(dumps_record(_record())[:30])
    with ResultWriter(out) as writer:
        writer.append(_record())
    assert len(read_results(out)) == 1


@pytest.mark.parametrize("text, why", [
    ("first line of notes\nsecond line without newline", "its first line is not a record"),
    ("a single line of someone's text", "ends in a line without a newline that is not a record"),
    ('{"benchmarks": [], "machine_info": {}}\n', "its first line is not a record"),
    ("[1, 2]\n", "its first line is not a record"),
    ('{"backend": "cpu"}\n', "its first line is not a record"),
], ids=["text", "one-line-text", "json-document", "json-array", "object-not-a-record"])
def test_a_file_that_is_not_results_is_refused_untouched(tmp_path, text, why):
    out = tmp_path / "notes.txt"
    out.write_text(text)
    with pytest.raises(RefbenchError) as info:
        ResultWriter(out)
    message = str(info.value)
    assert message.startswith(f"{out} ") and why in message and message.endswith("choose another --out")
    assert out.read_text() == text


def test_a_last_line_that_is_json_but_not_a_record_is_refused_untouched(tmp_path):
    out = tmp_path / "r.jsonl"
    text = dumps_record(_record()) + "\n" + '{"note": "added by hand"}'
    out.write_text(text)
    with pytest.raises(RefbenchError, match="does not rewrite lines it did not write"):
        ResultWriter(out)
    assert out.read_text() == text
