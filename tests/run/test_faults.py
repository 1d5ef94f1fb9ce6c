"""Nothing lost, nothing left running: kills, full disks, partial lines, CPU out of memory."""
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from refbench.records import store as results
from refbench.run.matrix import Matrix
from refbench.records.schema import make_record
from refbench.records.store import ResultWriter, read_results
from refbench.run.runner import _Launcher, finished_keys, run_matrix
from refbench.run.settings import Settings
from refbench.errors import RefbenchError

FAULTY = ("tests.fixtures.faulty_workloads",)
ROOT = Path(__file__).resolve().parents[2]


def _record(workload="test_tiny", status="ok"):
    return make_record(run_id="r", env={}, workload=workload, backend="cpu", mode="infer", batch_size=2,
                       status=status)


def _group_members(pgid: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_killing_a_run_with_a_hanging_cell_leaves_no_process(tmp_path, how):
    pidfile, out = tmp_path / "cell.pid", tmp_path / "r.jsonl"
    runner = subprocess.Popen(
        [sys.executable, "-m", "refbench", "run", "--workloads", "test_hang", "--modes", "infer", "--batch-sizes", "2",
         "--import", FAULTY[0], "--timeout", "120", "--out", str(out)],
        cwd=ROOT, env={**os.environ, "REFBENCH_TEST_PIDFILE": str(pidfile)}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline and runner.poll() is None, runner.stderr.read()
        time.sleep(0.2)
    cell = int(pidfile.read_text())
    runner.send_signal(how)
    runner.wait(300)
    deadline = time.monotonic() + 300
    while (_group_members(runner.pid) or not _gone(cell)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _group_members(runner.pid) == [], "the fork server or resource tracker outlived the run"
    assert _gone(cell), "the cell outlived the run"
    if how == signal.SIGTERM:
        assert runner.returncode == 130 and b"interrupted" in runner.stderr.read()


def test_a_record_a_killed_run_finished_is_appended_by_the_next_run(tmp_path):
    out = tmp_path / "r.jsonl"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folder = tmp_path / ".r.jsonl.cells" / f"cell-{dead.pid}-1"
    folder.mkdir(parents=True)
    (folder / "record.json").write_text(json.dumps(_record()))
    (tmp_path / ".r.jsonl.cells" / f"cell-{dead.pid}-2").mkdir()          # a cell killed before its record
    matrix = Matrix(workloads=["test_tiny"], backends=["cpu"], modes=["infer"], batch_sizes=[2],
                    settings=Settings(iters=2, max_warmup=2, imports=FAULTY))
    picked = run_matrix(matrix, out, resume=True, isolation="inline")
    assert [r["run_id"] for r in picked] == ["r"]                         # appended, and counted as finished
    assert not (tmp_path / ".r.jsonl.cells").exists()
    assert len(read_results(out)) == 1


def test_a_partial_last_line_is_cut_off_before_appending(tmp_path):
    out = tmp_path / "r.jsonl"
    whole = json.dumps(_record()) + "\n"
    out.write_text(whole + whole[:40])
    with ResultWriter(out) as writer:
        assert writer.repaired_bytes == 40
        writer.append(_record(status="failed"))
    lines = out.read_text().splitlines()
    assert [json.loads(line)["status"] for line in lines] == ["ok", "failed"]


def test_a_full_disk_keeps_every_complete_record_and_says_so_in_one_line(tmp_path, monkeypatch):
    out = tmp_path / "r.jsonl"
    writer = ResultWriter(out)
    writer.append(_record())
    real_write = os.write

    def half_then_full(fd, data):
        real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results.os, "write", half_then_full)
    with pytest.raises(RefbenchError, match="No space left on device; the 1 records written before are complete"):
        writer.append(_record(status="failed"))
    monkeypatch.undo()
    writer.close()
    assert [r["status"] for r in read_results(out)] == ["ok"] and out.read_text().endswith("\n")


def test_a_full_tmpfs(tmp_path):
    """The same on a real 64 KiB file system, where this machine lets the test mount one."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        out = mount / "r.jsonl"
        big = {**_record(), "metrics": {"samples": "x" * 9000}}
        written = 0
        with pytest.raises(RefbenchError, match="cannot write results"), ResultWriter(out) as writer:
            for _ in range(100):
                writer.append(big)
                written += 1
        kept = read_results(out)
        assert len(kept) == written and out.read_text().endswith("\n")
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_cpu_out_of_memory_is_oom_and_resume_retries_it_only_when_asked(tmp_path):
    out = tmp_path / "r.jsonl"
    matrix = Matrix(workloads=["test_cpu_oom"], backends=["cpu"], modes=["infer"], batch_sizes=[2],
                    settings=Settings(iters=2, max_warmup=2, imports=FAULTY))
    (record,) = run_matrix(matrix, out)
    assert record["status"] == "oom" and "CPU out of memory" in record["error"]
    assert run_matrix(matrix, out, resume=True, isolation="inline") == []
    (again,) = run_matrix(matrix, out, resume=True, retry=["oom"], isolation="inline")
    assert again["status"] == "oom"
    with pytest.raises(RefbenchError, match="--retry oops: not a status"):
        run_matrix(matrix, out, resume=True, retry=["oops"])


def test_a_record_appended_before_the_kill_is_not_appended_again(tmp_path):
    """The run was killed after appending a cell's record and before removing its scratch folder."""
    out = tmp_path / "r.jsonl"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    finished = _record()
    with ResultWriter(out) as writer:
        writer.append(finished)
    folder = tmp_path / ".r.jsonl.cells" / f"cell-{dead.pid}-1"
    folder.mkdir(parents=True)
    (folder / "record.json").write_text(results.dumps_record(finished))
    matrix = Matrix(workloads=["test_tiny"], backends=["cpu"], modes=["infer"], batch_sizes=[2],
                    settings=Settings(iters=2, max_warmup=2, imports=FAULTY))
    assert run_matrix(matrix, out, resume=True, isolation="inline") == []
    assert read_results(out) == [finished] and not (tmp_path / ".r.jsonl.cells").exists()


_KILLED_AFTER_APPEND = """
import os, signal, sys
from refbench.run import runner
from refbench.run.matrix import Matrix
from refbench.run.settings import Settings

runner._Launcher.done = lambda self, record: os.kill(os.getpid(), signal.SIGKILL)   # the kill, right after the append
matrix = Matrix(workloads=["test_tiny"], backends=["cpu"], modes=["infer"], batch_sizes=[2, 3],
                settings=Settings(iters=2, max_warmup=2, imports=("tests.fixtures.faulty_workloads",)))
runner.run_matrix(matrix, sys.argv[1], resume=True, isolation="subprocess")
"""


@pytest.mark.slow
def test_a_kill_between_append_and_scratch_removal_doubles_nothing(tmp_path):
    out = tmp_path / "r.jsonl"
    for _ in range(2):   # each run is killed after appending its first cell's record
        killed = subprocess.run([sys.executable, "-c", _KILLED_AFTER_APPEND, str(out)], cwd=ROOT, capture_output=True,
                                text=True, timeout=300)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (tmp_path / ".r.jsonl.cells").exists()      # the last run's folder stays, its record appended already
    matrix = Matrix(workloads=["test_tiny"], backends=["cpu"], modes=["infer"], batch_sizes=[2, 3],
                    settings=Settings(iters=2, max_warmup=2, imports=FAULTY))
    run_matrix(matrix, out, resume=True, isolation="inline")
    assert sorted(r["batch_size"] for r in read_results(out)) == [2, 3]
    assert not (tmp_path / ".r.jsonl.cells").exists()


@pytest.mark.slow
def test_a_cell_killed_from_outside_is_an_error_that_resume_measures_again(tmp_path):
    pidfile, out = tmp_path / "cell.pid", tmp_path / "r.jsonl"
    runner = subprocess.Popen(
        [sys.executable, "-m", "refbench", "run", "--workloads", "test_hang", "--modes", "infer", "--batch-sizes", "2",
         "--import", FAULTY[0], "--timeout", "300", "--out", str(out)],
        cwd=ROOT, env={**os.environ, "REFBENCH_TEST_PIDFILE": str(pidfile)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline and runner.poll() is None, runner.stderr.read()
        time.sleep(0.2)
    os.kill(int(pidfile.read_text()), signal.SIGKILL)
    assert runner.wait(120) == 3          # incomplete: a cell asked for has no measurement
    (record,) = read_results(out)
    assert record["status"] == "error" and "killed by SIGKILL" in record["error"]
    assert "`--resume` measures it again" in record["error"]
    if Path("/proc/vmstat").exists():
        assert "from outside refbench (the kernel's out-of-memory killer killed nothing meanwhile)" in record["error"]
    assert finished_keys(out) == set()      # --resume measures it again


@pytest.mark.parametrize("oom_killed, status, said", [
    (True, "oom", "while the kernel's out-of-memory killer killed a process"),
    (False, "error", "from outside refbench"),
    (None, "error", "by the kernel's out-of-memory killer or from outside refbench (this machine does not say which)"),
])
def test_sigkill_is_oom_only_when_the_kernel_killed_for_memory(tmp_path, oom_killed, status, said):
    outcome = _Launcher("inline", 60.0, tmp_path)._failure(-signal.SIGKILL, False, "", oom_killed)
    assert outcome.status == status and said in outcome.error


def test_retry_without_resume_is_refused(tmp_path):
    matrix = Matrix(workloads=["test_tiny"], backends=["cpu"], modes=["infer"], batch_sizes=[2],
                    settings=Settings(imports=FAULTY))
    with pytest.raises(RefbenchError, match="--retry picks which finished cells --resume measures again: add --resume"):
        run_matrix(matrix, tmp_path / "r.jsonl", retry=["oom"], isolation="inline")
