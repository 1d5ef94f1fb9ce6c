"""What comes back from a device call: two whole files, whenever the call ends."""
import io
import json
import os
import tarfile

import pytest

from refbench.gpu_check import pack


@pytest.fixture
def folder(tmp_path):
    folder = tmp_path / "reports" / "gpu" / "gpu-check"
    folder.mkdir(parents=True)
    (folder / "kernels.jsonl").write_text('{"a": 1}\n{"b": 2}\n{"c": ')   # a record being appended
    (folder / "plan.txt").write_text("the plan\n")
    (folder / ".validate.json.partial").write_text("{")                  # a file being written
    return folder


def _members(archive):
    with tarfile.open(fileobj=io.BytesIO(archive.read_bytes())) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def test_the_archive_holds_whole_records_and_no_partial_file(folder, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    written = pack.pack(folder, out, tmp_path, "summary")
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == ["gpu-check.tar.gz", "summary.txt"]
    members = _members(written[0])
    assert set(members) == {"reports/gpu/gpu-check/kernels.jsonl", "reports/gpu/gpu-check/plan.txt"}
    lines = members["reports/gpu/gpu-check/kernels.jsonl"].decode().splitlines()
    assert [json.loads(line) for line in lines] == [{"a": 1}, {"b": 2}]


def test_a_write_cut_off_leaves_the_previous_version_and_nothing_the_tool_returns(folder, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    pack.pack(folder, out, tmp_path, "first")
    (folder / "plan.txt").write_text("a newer plan\n")

    def killed(src, dst):
        raise KeyboardInterrupt("killed between the write and the rename")

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        pack.pack(folder, out, tmp_path, "second")
    assert (out / "summary.txt").read_text() == "first"
    assert _members(out / "gpu-check.tar.gz")["reports/gpu/gpu-check/plan.txt"] == b"the plan\n"
    # The half-written file lies three folders down, where the device tool returns nothing.
    returned = [p for p in out.rglob("*") if p.is_file() and len(p.relative_to(out).parts) <= 3]
    assert sorted(p.name for p in returned) == ["gpu-check.tar.gz", "summary.txt"]


def test_a_file_over_the_tools_limit_is_refused(tmp_path):
    with pytest.raises(ValueError, match="over the 16 MiB"):
        pack.place(tmp_path, "big.bin", b"x" * (pack.MAX_FILE_BYTES + 1))
