"""refbench.lifeline: what a command starts dies with it, and its scratch folders go, even after kill -9."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from refbench.lifeline import alive, run_group
from tests.fixtures.processes import wait_until

ROOT = Path(__file__).resolve().parents[1]


def _read_pids(path: Path, count: int) -> list[int]:
    assert wait_until(lambda: path.exists() and len(path.read_text().split()) >= count), "the command never started"
    return [int(pid) for pid in path.read_text().split()]


_OWNER = """
import os, subprocess, sys, time
from refbench.lifeline import new_scratch_dir
scratch = new_scratch_dir(prefix="refbench-test-")
open(os.path.join(scratch, "clone"), "w").write("work")
# a process in a session of its own, and a grandchild, neither of which would die with the owner by itself
child = subprocess.Popen(["bash", "-c", "sleep 300 & echo $! > " + sys.argv[2] + "; sleep 300"], start_new_session=True)
while not os.path.exists(sys.argv[2]) or not open(sys.argv[2]).read().strip():
    time.sleep(0.05)
grandchild = open(sys.argv[2]).read().strip()
open(sys.argv[1], "w").write(f"{child.pid} {grandchild} " + str(scratch))
time.sleep(300)
"""


def test_a_command_killed_with_sigkill_leaves_no_process_and_no_scratch_folder(tmp_path):
    facts, inner = tmp_path / "facts", tmp_path / "inner"
    owner = subprocess.Popen([sys.executable, "-c", _OWNER, str(facts), str(inner)], cwd=ROOT,
                             env={**os.environ, "TMPDIR": str(tmp_path)})
    assert wait_until(lambda: facts.exists() and len(facts.read_text().split()) == 3)
    child, grandchild, scratch = facts.read_text().split()
    assert Path(scratch, "clone").exists() and alive(int(child)) and alive(int(grandchild))
    owner.kill()
    owner.wait()
    assert wait_until(lambda: not alive(int(child)) and not alive(int(grandchild)) and not Path(scratch).exists())


def test_a_command_that_ends_normally_removes_its_scratch_itself_and_kills_nothing(tmp_path):
    script = ("import subprocess, sys\nfrom refbench.lifeline import scratch_dir\n"
              "with scratch_dir(prefix='refbench-test-') as d:\n    print(d)\n"
              "p = subprocess.Popen(['sleep', '30'], start_new_session=True, stdout=subprocess.DEVNULL, "
              "stderr=subprocess.DEVNULL)\nprint(p.pid)")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TMPDIR": str(tmp_path)})
    scratch, sleeper = done.stdout.split()
    try:
        assert not Path(scratch).exists()
        time.sleep(1.0)
        assert alive(int(sleeper))     # what the command meant to leave running (here: a sleep) is not the watcher's
    finally:
        os.kill(int(sleeper), signal.SIGKILL)


_CHILD_WATCHING = """
import os, sys, time
from refbench.lifeline import die_with
os.setsid()
die_with(int(sys.argv[1]))
open(sys.argv[2], "w").write(str(os.getpid()))
time.sleep(300)
"""


def test_a_child_dies_with_the_process_it_watches(tmp_path):
    pidfile = tmp_path / "child"
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    child = subprocess.Popen([sys.executable, "-c", _CHILD_WATCHING, str(parent.pid), str(pidfile)], cwd=ROOT)
    _read_pids(pidfile, 1)
    time.sleep(0.5)
    assert child.poll() is None
    parent.kill()
    parent.wait()
    assert child.wait(60) == -signal.SIGKILL


def test_run_group_kills_the_whole_group_on_timeout(tmp_path):
    pidfile = tmp_path / "grandchild"
    with pytest.raises(subprocess.TimeoutExpired):
        run_group(["bash", "-c", f"sleep 300 & echo $! > {pidfile}; wait"], timeout=2)
    (grandchild,) = _read_pids(pidfile, 1)
    assert wait_until(lambda: not alive(grandchild))
