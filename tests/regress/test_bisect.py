"""refbench bisect on a tiny scratch repository whose cell is measured by an injected command."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from refbench.regress.bisect import parse_cell
from refbench.cli import main
from tests.fixtures.processes import marked, new_mark, wait_until

ROOT = Path(__file__).resolve().parents[2]

# Writes a record of the cell "toy | cpu | train | bs=4" whose step times centre on the number in speed.txt.
MEASURE = """\
import json, os, random
ms = float(open("speed.txt").read())
rng = random.Random(ms)
times = [ms * (1 + 0.02 * rng.gauss(0, 1)) for _ in range(20)]
record = {"schema": 1, "workload": "toy", "backend": "cpu", "mode": "train", "batch_size": 4, "status": "ok",
          "variant": {}, "env": {"env_key": "toy"}, "metrics": {"samples_per_s": 4e3 / sorted(times)[10],
          "latency_ms": {"median": sorted(times)[10], "samples": times}}}
open(os.environ["REFBENCH_BISECT_OUT"], "a").write(json.dumps(record) + "\\n")
"""


# The same, on a machine whose load rises for a spell: measurements 6 to 13 (counted across the whole bisect, in a
# file outside the repository) run 30% slower, whatever the commit.
MEASURE_BUSY = MEASURE.replace("rng = random.Random(ms)", """count = os.environ["TOY_LOAD"]
n = int(open(count).read()) if os.path.exists(count) else 0
open(count, "w").write(str(n + 1))
ms *= 1.3 if 6 <= n < 14 else 1.0
rng = random.Random(n)""")


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    """Eight commits; the fifth makes the step 20% slower."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "t")
    (repo / "measure.py").write_text(MEASURE)
    hashes = []
    for i in range(8):
        (repo / "speed.txt").write_text("12.0" if i >= 4 else "10.0")
        (repo / "notes.txt").write_text(f"change {i}\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"change {i}")
        hashes.append(git(repo, "rev-parse", "HEAD"))
    return repo, hashes


def state(repo):
    return (git(repo, "rev-parse", "HEAD"), git(repo, "status", "--porcelain"), git(repo, "branch", "--list"),
            git(repo, "worktree", "list"), sorted(p.name for p in (repo / ".git").iterdir()))


CELL = "toy | cpu | train | bs=4 | synthetic"


def test_bisect_names_the_commit_that_made_the_cell_slower(repo, capsys):
    repo, hashes = repo
    before = state(repo)
    assert main(["bisect", "--repo", str(repo), "--good", hashes[0], "--bad", "main", "--cell", CELL,
                 "--measure", "python measure.py"]) == 0
    out = capsys.readouterr().out
    assert f"first bad commit: {hashes[4][:12]} change 4" in out
    ratio = float(out.split("samples_per_s: ")[1].split("x")[0])
    assert ratio == pytest.approx(10 / 12, abs=0.04)
    assert state(repo) == before      # nothing in the repository changed: no bisect state, no worktree, no branch


def test_a_busy_spell_never_makes_an_innocent_commit_the_culprit(repo, capsys, monkeypatch, tmp_path):
    """Measured alone, a commit measured during the spell looks as slow as BAD; measured between GOOD and BAD in
    one stretch, round against round, it does not: bisect names the commit that made the cell slower, or says
    it cannot, and names no other."""
    repo, hashes = repo
    busy = tmp_path / "measure_busy.py"           # outside the repository: every checkout is measured by it
    busy.write_text(MEASURE_BUSY)
    monkeypatch.setenv("TOY_LOAD", str(tmp_path / "load-count"))
    code = main(["bisect", "--repo", str(repo), "--good", hashes[0], "--bad", "main", "--cell", CELL,
                 "--measure", f"python {busy}", "--max-repeats", "4"])
    out = capsys.readouterr().out
    assert (code, f"first bad commit: {hashes[4][:12]}" in out) in ((0, True), (3, False))
    assert "first bad commit" in out or "INCONCLUSIVE" in out


def test_a_dirty_tree_is_refused(repo, capsys):
    repo, hashes = repo
    (repo / "notes.txt").write_text("edited\n")
    assert main(["bisect", "--repo", str(repo), "--good", hashes[0], "--bad", "main", "--cell", CELL,
                 "--measure", "python measure.py"]) == 2
    err = capsys.readouterr().err.strip()
    assert "has uncommitted changes; commit or stash them first" in err and "\n" not in err
    assert (repo / "notes.txt").read_text() == "edited\n"


@pytest.mark.parametrize("args, message", [
    (["--good", "v9.9", "--bad", "main"], "--good v9.9: no such revision"),
    (["--good", "HEAD~7", "--bad", "main", "--cell", "toy cpu"], "--cell 'toy cpu': give it as the tables print it"),
    (["--good", "HEAD~7", "--bad", "main", "--metric", "peak_mem_bytes"], "--metric peak_mem_bytes: bisect judges"),
    (["--good", "HEAD~7", "--bad", "main", "--cell", "toy | cpu | train | bs=x"],
     "--cell 'toy | cpu | train | bs=x': the batch size bs=x is not a positive integer"),
    (["--good", "HEAD~7", "--bad", "main", "--cell", ""], "argument --cell: expected a value, got an empty string"),
    (["--good", "HEAD~7", "--bad", "main", "--measure", ""], "argument --measure: expected a value"),
])
def test_bad_input_is_one_line(repo, capsys, args, message):
    repo, _ = repo
    argv = ["bisect", "--repo", str(repo), "--cell", CELL, "--measure", "python measure.py", *args]
    assert main(argv) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]   # the lines before it say what was measured
    assert last.startswith("refbench: error: ") and message in last


def test_a_bad_that_is_not_worse_is_nothing_to_bisect_and_exits_incomplete(repo, capsys):
    repo, _ = repo
    assert main(["bisect", "--repo", str(repo), "--good", "HEAD~7", "--bad", "HEAD~5", "--cell", CELL,
                 "--measure", "python measure.py"]) == 3
    assert "INCONCLUSIVE: --bad HEAD~5 is not worse than --good HEAD~7" in capsys.readouterr().out


def test_a_cell_key_as_the_tables_print_it():
    key = parse_cell("lenet5 activation=tanh / cpu+int8 / infer / bs=16 / synthetic")
    assert (key.workload, key.variant, key.backend, key.mode, key.batch_size) == (
        "lenet5", {"activation": "tanh"}, "cpu+int8", "infer", 16)
    assert json.dumps(parse_cell("mlp | cpu | train | bs=16").variant) == "{}"


def test_bisect_killed_with_sigkill_leaves_no_clone_and_no_process(repo, tmp_path):
    """Killed while it measures --good: the measurement and the scratch clone go with it."""
    repo, _ = repo
    scratch_root = tmp_path / "tmp"
    scratch_root.mkdir()
    started = tmp_path / "started"
    name, value = new_mark()
    bisect = subprocess.Popen(
        [sys.executable, "-m", "refbench", "bisect", "--repo", str(repo), "--good", "HEAD~7", "--bad", "main",
         "--cell", CELL, "--measure", f"touch {started}; sleep 300; python measure.py"],
        cwd=ROOT, env={**os.environ, "TMPDIR": str(scratch_root), name: value}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    assert wait_until(started.exists, 120) and list(scratch_root.glob("refbench-bisect-*"))
    bisect.kill()
    bisect.wait()
    assert wait_until(lambda: not marked(name, value), 60), "a measurement outlived bisect"
    assert wait_until(lambda: not list(scratch_root.glob("refbench-bisect-*")), 60), "the scratch clone stayed"
    assert git(repo, "status", "--porcelain") == "" and "bisect" not in git(repo, "branch", "--list")
