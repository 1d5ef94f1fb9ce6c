"""The matrix on a Ray cluster (`--executor ray`): the cells and statuses of a local run, every failure a record,
--resume after a killed driver, and no process of a cluster the command started left behind.

One cluster of 2 CPUs serves the module; its workers are told where a hanging cell writes its pid and which file
holds it (test_hang hangs while the file exists). The commands run as subprocesses connected to it with --address,
except the two that start a cluster of their own.
"""
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the Ray executor needs Ray: pip install 'refbench[ray]'")

from refbench.errors import EXIT_INCOMPLETE, EXIT_OK, RefbenchError  # noqa: E402
from refbench.lifeline import alive  # noqa: E402
from refbench.records.schema import cell_key  # noqa: E402
from refbench.records.store import read_results  # noqa: E402
from refbench.run.executors import Placement, open_executor  # noqa: E402
from refbench.run.matrix import Matrix  # noqa: E402
from refbench.run.runner import run_matrix  # noqa: E402
from refbench.run.settings import Settings  # noqa: E402
from tests.fixtures.processes import marked, new_mark, wait_until  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FAULTY = "tests.fixtures.faulty_workloads"
QUICK = ["--iters", "2", "--max-warmup", "2", "--min-warmup-s", "0", "--import", FAULTY]
LABEL = {"refbench-test": "yes"}      # the module cluster's node label


@dataclass
class Cluster:
    address: str
    pidfile: Path        # where its workers' hanging cells write their pid
    hold: Path           # while this file exists, their hanging cells hang

    def hang(self) -> None:
        self.pidfile.unlink(missing_ok=True)
        self.hold.touch()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ray")
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.MonkeyPatch.context() as patch:     # the cluster's processes inherit this environment
        patch.setenv("REFBENCH_TEST_PIDFILE", str(folder / "cell.pid"))
        patch.setenv("REFBENCH_TEST_HOLD", str(folder / "hold"))
        context = ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                           logging_level="WARNING", labels=LABEL)
    signal.signal(signal.SIGTERM, handler)
    yield Cluster(context.address_info["address"], folder / "cell.pid", folder / "hold")
    ray.shutdown()


def _argv(*args: str, address: str | None = None) -> list[str]:
    return [sys.executable, "-m", "refbench", *args, "--executor", "ray", *(["--address", address] if address else [])]


def _cli(*args: str, address: str) -> subprocess.CompletedProcess:
    return subprocess.run(_argv(*args, address=address), cwd=ROOT, capture_output=True, text=True, timeout=600)


def _start(*args: str, address: str | None = None, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(_argv(*args, address=address), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _pid_in(pidfile: Path, driver: subprocess.Popen, other_than: int | None = None) -> int:
    """The pid a hanging cell wrote, once it has (the driver must still be at work)."""
    def written() -> bool:
        assert driver.poll() is None, driver.communicate()[1][-2000:]
        text = pidfile.read_text() if pidfile.exists() else ""
        return text.isdigit() and int(text) != other_than
    assert wait_until(written, 240)
    return int(pidfile.read_text())


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def test_a_matrix_on_ray_has_the_cells_and_statuses_of_a_local_run(cluster, tmp_path):
    matrix = Matrix(workloads=["test_tiny", "test_crash"], backends=["cpu", "cpu+int8"], modes=["train", "infer"],
                    batch_sizes=[2], settings=Settings(iters=2, max_warmup=2, min_warmup_s=0, imports=(FAULTY,)))
    local = run_matrix(matrix, tmp_path / "local.jsonl")
    with open_executor("ray", Placement(labels=LABEL)) as executor:     # this process is connected to the cluster
        remote = run_matrix(matrix, tmp_path / "ray.jsonl", executor=executor)

    def cells(records):
        return sorted((cell_key(r), r["status"]) for r in records)

    assert cells(remote) == cells(local)
    assert {status for _, status in cells(remote)} == {"ok", "error", "skipped"}
    assert read_results(tmp_path / "ray.jsonl") == remote
    crash = next(r for r in remote if r["workload"] == "test_crash" and r["status"] == "error")
    assert "SIGABRT" in crash["error"] and "about to crash" in crash["error"]
    # each record carries the machine that measured it: the node, after it applied the cells' --threads
    assert all(r["env"]["host"] == socket.gethostname() and r["env"]["threads"] == 1 for r in remote)


def test_on_ray_cells_not_started_within_the_time_budget_are_not_run(cluster, tmp_path):
    matrix = Matrix(workloads=["test_tiny"], backends=["cpu", "cpu+int8"], modes=["train", "infer"], batch_sizes=[2],
                    settings=Settings(iters=2, max_warmup=2, imports=(FAULTY,)))
    with open_executor("ray") as executor:
        records = run_matrix(matrix, tmp_path / "r.jsonl", executor=executor, time_budget_s=1e-9)
    assert sorted((r["backend"], r["mode"], r["status"]) for r in records) == [
        ("cpu", "infer", "not_run"), ("cpu", "train", "not_run"), ("cpu+int8", "infer", "not_run"),
        ("cpu+int8", "train", "skipped")]
    assert all("time budget of 1e-09 s was used up before this cell started" in r["error"]
               for r in records if r["status"] == "not_run")


def test_what_the_cluster_lacks_is_one_line_or_a_skip_before_anything_runs(cluster, tmp_path):
    with pytest.raises(RefbenchError, match=r"no node of the Ray cluster at \S+ has what --node-label and "
                                            r"--node-resource ask for \(refbench-test=no\); its nodes have: .*CPU=2"):
        with open_executor("ray", Placement(labels={"refbench-test": "no"})):
            pass
    settings = Settings(iters=2, max_warmup=2, imports=(FAULTY,))
    with open_executor("ray") as executor:
        with pytest.raises(RefbenchError, match="a cell asks for 4 CPUs .* and no node of the Ray cluster at"):
            run_matrix(Matrix(workloads=["test_tiny"], backends=["cpu"], modes=["infer"], batch_sizes=[2],
                              settings=Settings(threads=4, imports=(FAULTY,))), tmp_path / "r.jsonl", executor=executor)
        (record,) = run_matrix(Matrix(workloads=["test_tiny"], backends=["cuda"], modes=["infer"], batch_sizes=[2],
                                      settings=settings), tmp_path / "r.jsonl", executor=executor)
    assert record["status"] == "skipped" and record["error"].startswith("no CUDA device on any node of the Ray cluster")


def test_on_ray_a_hanging_cell_times_out_and_a_crashing_one_is_recorded_while_the_rest_finish(cluster, tmp_path):
    cluster.hang()
    hanging, rest = tmp_path / "hang.jsonl", tmp_path / "rest.jsonl"
    # the hanging cell's timeout is short (its subject); the others keep the default, on a machine however loaded
    hang = _start("run", "--workloads", "test_hang", "--modes", "infer", "--batch-sizes", "2", *QUICK,
                  "--timeout", "10", "--out", str(hanging), address=cluster.address)
    done = _cli("run", "--workloads", "test_crash,test_tiny", "--modes", "infer", "--batch-sizes", "2", *QUICK,
                "--out", str(rest), address=cluster.address)
    assert hang.wait(600) == EXIT_INCOMPLETE, hang.communicate()[1][-2000:]
    assert done.returncode == EXIT_INCOMPLETE, done.stderr[-2000:]
    (timed_out,) = read_results(hanging)
    assert timed_out["status"] == "timeout" and "no result within 10 s, killed" in timed_out["error"]
    assert {r["workload"]: r["status"] for r in read_results(rest)} == {"test_crash": "error", "test_tiny": "ok"}
    assert "INCOMPLETE: 1 of 2 cells have no measurement" in done.stdout


def test_a_killed_ray_worker_ends_its_cell_as_a_record_that_names_the_node(cluster, tmp_path):
    cluster.hang()
    out = tmp_path / "r.jsonl"
    driver = _start("run", "--workloads", "test_hang,test_tiny", "--modes", "infer", "--batch-sizes", "2", *QUICK,
                    "--out", str(out), address=cluster.address)
    cell = _pid_in(cluster.pidfile, driver)
    worker = _parent(_parent(cell))            # the cell's fork server's parent: the Ray worker that runs it
    os.kill(worker, signal.SIGKILL)
    assert driver.wait(600) == EXIT_INCOMPLETE, driver.communicate()[1][-2000:]
    records = {r["workload"]: r for r in read_results(out)}
    hang = records["test_hang"]
    assert hang["status"] == "error" and records["test_tiny"]["status"] == "ok"
    assert f"the Ray worker running it on {socket.gethostname()} (" in hang["error"]
    assert f"worker pid {worker})" in hang["error"] and "`--resume` measures it again" in hang["error"]
    assert wait_until(lambda: not alive(cell)), "the cell outlived its worker"


def test_resume_after_the_driver_is_killed_finishes_the_matrix_without_a_duplicate(cluster, tmp_path):
    cluster.hang()
    out = tmp_path / "r.jsonl"
    argv = ["run", "--workloads", "test_tiny,test_hang", "--modes", "infer", "--batch-sizes", "2,3", *QUICK,
            "--out", str(out)]
    driver = _start(*argv, address=cluster.address)
    cell = _pid_in(cluster.pidfile, driver)
    driver.kill()
    driver.wait()
    assert wait_until(lambda: not alive(cell)), "the killed driver's job kept its cell running"
    assert all(node["Alive"] for node in ray.nodes())     # a driver given --address leaves the cluster alone
    before = read_results(out) if out.exists() else []
    cluster.hold.unlink()                                 # the hanging cells step from now on
    done = _cli(*argv, "--resume", address=cluster.address)
    assert done.returncode == EXIT_OK, done.stderr[-2000:]
    records = read_results(out)
    assert sorted(cell_key(r)[::4] for r in records) == [("test_hang", 2), ("test_hang", 3), ("test_tiny", 2),
                                                        ("test_tiny", 3)]
    assert records[:len(before)] == before             # what the killed run appended stays, measured once
    assert {r["status"] for r in records} == {"ok"} and "complete: every cell measured" in done.stdout


@pytest.mark.parametrize("ending", ["sigkill", "exit"])
def test_a_cluster_the_command_started_dies_with_it(tmp_path, ending):
    mark, value = new_mark()
    pidfile = tmp_path / "cell.pid"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    driver = _start("run", "--workloads", "test_hang" if ending == "sigkill" else "test_tiny", "--modes", "infer",
                    "--batch-sizes", "2", *QUICK, "--timeout", "300", "--out", str(tmp_path / "r.jsonl"),
                    env={**env, mark: value, "REFBENCH_TEST_PIDFILE": str(pidfile)})
    if ending == "sigkill":
        _pid_in(pidfile, driver)
        started = {_name(pid) for pid in marked(mark, value)}
        assert {"raylet", "gcs_server"} <= started, started    # the cluster's processes carry the command's mark
        driver.kill()
        driver.wait()
    else:
        assert driver.wait(600) == EXIT_OK, driver.communicate()[1][-2000:]
    assert wait_until(lambda: not marked(mark, value), 120), \
        f"left behind: {[(pid, _name(pid)) for pid in marked(mark, value)]}"


@pytest.mark.slow
def test_converge_on_ray_trains_the_seeds_a_local_run_trains_to_the_same_figures(cluster, tmp_path):
    argv = ["converge", "--workloads", "mlp", "--seeds", "2", "--max-steps", "30"]
    local = subprocess.run([sys.executable, "-m", "refbench", *argv, "--out", str(tmp_path / "local.jsonl")], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    remote = _cli(*argv, "--out", str(tmp_path / "ray.jsonl"), address=cluster.address)
    assert remote.returncode == local.returncode, remote.stderr[-2000:]

    def figures(path):
        return sorted((r["metrics"].get("seed", -1), r["status"], r["metrics"].get("final"), r["metrics"].get("steps"))
                      for r in read_results(path))

    records = read_results(tmp_path / "ray.jsonl")
    assert figures(tmp_path / "ray.jsonl") == figures(tmp_path / "local.jsonl") and len(records) == 3
    summary = next(r for r in records if "seeds" in r["metrics"])
    assert all(r["env"] == summary["env"] and r["env"]["host"] == socket.gethostname() for r in records)


@pytest.mark.slow
def test_a_night_on_ray_is_stored_under_the_machine_that_measured_it(cluster, tmp_path):
    history = tmp_path / "h"
    done = _cli("nightly", "--history", str(history), "--workloads", "test_tiny", "--modes", "infer", "--batch-sizes",
                "2", *QUICK, address=cluster.address)
    assert done.returncode == EXIT_OK, done.stderr[-2000:]
    (night,) = history.glob("*/*.jsonl")
    (record,) = read_results(night)
    assert night.parent.name == record["env"]["env_key"] and record["status"] == "ok"
