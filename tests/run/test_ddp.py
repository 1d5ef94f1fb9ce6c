"""``refbench ddp`` on the CPU with gloo: two ranks train like one process, faults end as records, nothing is left.

Each launch forks its ranks from a fork server that imports torch once per
test session (the first launch pays for it); the steps are few and tiny.
"""
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from refbench import cli
from refbench.run._ddp_worker import shard
from refbench.run.ddp import DDPConfig, run_ddp, skip_reason
from refbench.records.schema import FIELDS
from refbench.records.store import read_results
from refbench.models import get_workload
from refbench.errors import RefbenchError
from tests.fixtures.processes import marked, new_mark, wait_until

FAULTS = "tests.fixtures.ddp_faults"
QUICK = {"nproc": 2, "iters": 3, "warmup": 1, "check_steps": 2, "profile_steps": 2, "timeout_s": 120.0,
         "imports": (FAULTS,)}
CORES = len(os.sched_getaffinity(0))
needs_two_cores = pytest.mark.skipif(CORES < 2, reason="two gloo ranks need two CPU cores")


def _stat(pid: str) -> tuple[int, str] | None:
    """(parent pid, state) of a process, from /proc; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), fields[0]


def leftover_processes() -> list[int]:
    """Live processes below this one, less the servers it keeps (fork server, resource tracker, lifeline's watcher).

    Ranks are forked from the fork server, so any grandchild of this
    process, or any other child, is a process a launch left behind.
    """
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(entry)) and stat[1] != "Z":
            parents[int(entry)] = stat[0]

    def servers(pid: int) -> bool:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        return (b"multiprocessing.forkserver" in command or b"multiprocessing.resource_tracker" in command
                or b"REFBENCH_LIFELINE_" in command)     # refbench.lifeline's watcher, kept for the process's life

    children = [pid for pid, parent in parents.items() if parent == os.getpid()]
    grandchildren = [pid for pid, parent in parents.items() if parent in children]
    return [pid for pid in children if not servers(pid)] + grandchildren


def assert_nothing_left() -> None:
    deadline = time.monotonic() + 10
    while leftover_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert leftover_processes() == []


# ----- what the harness decides without launching anything -----

def test_world_sizes_batches_and_shards():
    config = DDPConfig(nproc=6, batch_size=48)
    assert config.local_world_sizes() == [1, 2, 4, 6]
    assert [config.global_batch_size(n) for n in (1, 4)] == [48, 192]
    strong = DDPConfig(nproc=4, batch_size=48, strong=True)
    assert [strong.global_batch_size(n) for n in (1, 4)] == [48, 48]
    nodes = DDPConfig(nproc=2, nnodes=3, node_rank=1, rdzv_endpoint="localhost:29500")
    assert nodes.launches() == [(3, 2), (1, 1), (1, 2)] and nodes.world_sizes() == [1, 2, 6]
    batch = get_workload("lenet5").example_batch(6)
    parts = [shard(batch, rank, 3) for rank in range(3)]
    assert all(len(x) == 2 for x, _ in parts)
    assert torch.equal(torch.cat([x for x, _ in parts]), batch[0])
    assert torch.equal(torch.cat([y for _, y in parts]), batch[1])


def test_what_cannot_run_under_ddp_is_skipped_with_the_reason(tmp_path):
    config = DDPConfig(nproc=1, imports=(FAULTS,)).resolved()
    __import__(FAULTS)
    assert "no single step" in skip_reason(get_workload("hpo_rf_wine"), config)
    assert "GANOptimizers" in skip_reason(get_workload("dcgan"), config)
    assert "cannot be split across ranks" in skip_reason(get_workload("test_ddp_features_first"), config)
    assert skip_reason(get_workload("lenet5"), config) is None
    records = run_ddp(["hpo_rf_wine", "wgan_gp"], config, tmp_path / "r.jsonl")
    assert [(r["workload"], r["status"]) for r in records] == [("hpo_rf_wine", "skipped"), ("wgan_gp", "skipped")]
    assert "torch.optim.Optimizer" in records[1]["error"]
    assert read_results(tmp_path / "r.jsonl") == records


@pytest.mark.parametrize("argv, message", [
    (["--nproc", "0"], "--nproc: expected a positive integer, got '0'"),
    (["--nproc", str(CORES + 1)], f"needs {CORES + 1} CPU cores"),
    (["--nproc", "2", "--strong", "--batch-size", "5"], "cannot be split evenly over 2 ranks"),
    (["--nproc", "1", "--sync-batchnorm"], "SyncBatchNorm runs on GPUs only"),
    (["--nproc", "1", "--node-rank", "1"], "add --nnodes N"),
    (["--nproc", "1", "--nnodes", "2", "--node-rank", "0"], "needs --rdzv-endpoint HOST:PORT"),
    (["--nproc", "1", "--nnodes", "2", "--node-rank", "2", "--rdzv-endpoint", "h:1"], "0 <= R < 2"),
    (["--nproc", "1", "--nnodes", "2", "--node-rank", "1", "--rdzv-endpoint", "node0"], "expected HOST:PORT"),
])
def test_bad_arguments_are_one_line_and_exit_2(argv, message, capsys, tmp_path):
    assert cli.main(["ddp", "--workloads", "mlp", "--out", str(tmp_path / "r.jsonl"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine with a GPU can run NCCL")
def test_nccl_without_a_gpu_is_a_bad_argument(capsys):
    assert cli.main(["ddp", "--workloads", "mlp", "--nproc", "1", "--dist-backend", "nccl"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_an_unreachable_rendezvous_fails_within_its_timeout():
    with socket.socket() as probe:   # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = DDPConfig(nproc=1, nnodes=2, node_rank=1, rdzv_endpoint=f"127.0.0.1:{port}", rdzv_timeout_s=2)
    started = time.monotonic()
    with pytest.raises(RefbenchError, match="nothing answered at the rendezvous endpoint .* start node 0"):
        run_ddp(["mlp"], config)
    assert time.monotonic() - started < 60    # its subject: 2 s, not the default 300 s


# ----- launches -----

@needs_two_cores
def test_two_ranks_train_like_one_process_and_records_say_so(tmp_path):
    out = tmp_path / "ddp.jsonl"
    records = run_ddp(["mlp", "lenet5"], DDPConfig(**QUICK), out)
    assert read_results(out) == records
    assert [(r["workload"], r["variant"]["world_size"], r["status"]) for r in records] == [
        ("mlp", 1, "ok"), ("mlp", 2, "ok"), ("lenet5", 1, "ok"), ("lenet5", 2, "ok")]
    for record in records:
        metrics, world_size = record["metrics"], record["variant"]["world_size"]
        assert set(record) == set(FIELDS) and record["mode"] == "ddp" and record["backend"] == "cpu"
        assert record["variant"] | {"scaling": "weak", "dist_backend": "gloo", "nnodes": 1, "bucket_cap_mb": None,
                                    "static_graph": False, "sync_batchnorm": False} == record["variant"]
        assert record["batch_size"] == 64 * world_size and metrics["per_rank_batch_size"] == 64
        check = metrics["correctness"]
        assert check["compared"] and check["ranks_agree"] and check["max_rel_err"] <= check["tolerance"]
        assert metrics["samples_per_s"] == pytest.approx(record["batch_size"] / metrics["step_ms"]["median"] * 1e3)
        assert len(metrics["rank_step_ms"]) == len(metrics["peak_mem_bytes_per_rank"]) == world_size
        assert {"p50", "p90"} <= set(metrics["rank_step_ms"][0]) and metrics["step_ms"]["n"] == QUICK["iters"]
        assert 0 < metrics["allreduce_share"] <= 1
    for one, two in (records[:2], records[2:]):
        assert one["metrics"]["scaling_efficiency"] == 1.0
        assert two["metrics"]["scaling_efficiency"] == pytest.approx(
            two["metrics"]["samples_per_s"] / (2 * one["metrics"]["samples_per_s"]))
    assert_nothing_left()


@needs_two_cores
def test_the_comparison_catches_unsynchronised_gradients_and_knows_when_it_cannot_compare():
    records = run_ddp(["test_ddp_unsynced", "test_ddp_batchnorm", "test_ddp_random", "test_ddp_shift_invariant"],
                      DDPConfig(**QUICK))
    status = {(r["workload"], r["variant"]["world_size"]): r for r in records}
    assert status["test_ddp_unsynced", 1]["status"] == "ok"   # one rank: nothing to synchronise
    unsynced = status["test_ddp_unsynced", 2]
    assert unsynced["status"] == "failed"
    assert "differ from single-process training" in unsynced["error"] and "worst: " in unsynced["error"]
    assert "rank(s) 1 differ from rank 0's" in unsynced["error"]
    assert not unsynced["metrics"]["correctness"]["ranks_agree"]
    for name, cause in (("test_ddp_batchnorm", "BatchNorm"), ("test_ddp_random", "random numbers")):
        assert status[name, 1]["metrics"]["correctness"]["compared"]
        two = status[name, 2]
        assert two["status"] == "ok" and not two["metrics"]["correctness"]["compared"]
        assert cause in two["metrics"]["correctness"]["note"] and two["metrics"]["correctness"]["ranks_agree"]
    shifted = status["test_ddp_shift_invariant", 2]   # rounding that Adam amplified: float64 decides
    check = shifted["metrics"]["correctness"]
    assert shifted["status"] == "ok" and check["compared"] and check["worst"] == "shift"
    assert check["max_rel_err"] > check["tolerance"] and "float64" in check["against"]


@needs_two_cores
def test_ranks_that_judge_their_steps_differently_still_time_the_same_steps():
    """With its own block size each rank would time a different number of steps, and the one that ran
    fewer would leave the other waiting in an all-reduce until the watchdog."""
    (_, two) = run_ddp(["test_ddp_uneven"], DDPConfig(**{**QUICK, "timeout_s": 40.0, "check": False}))
    assert two["status"] == "ok", two["error"]
    assert [r["rank"] for r in two["metrics"]["rank_step_ms"]] == [0, 1]


@needs_two_cores
def test_a_rank_that_raises_ends_the_launch_with_its_error_and_leaves_nothing(capsys, tmp_path):
    out = tmp_path / "r.jsonl"
    started = time.monotonic()
    code = cli.main(["ddp", "--workloads", "test_ddp_raise,mlp", "--nproc", "2", "--import", FAULTS, "--iters", "3",
                     "--warmup", "1", "--profile-steps", "1", "--no-check", "--out", str(out)])
    assert code == 3 and time.monotonic() - started < 300   # not the 600 s watchdog; no measurement
    records = read_results(out)
    assert [r["status"] for r in records] == ["ok", "error", "ok", "ok"]   # the run went on
    failed = records[1]
    assert failed["error"].startswith("rank 1 raised first")
    assert "RuntimeError: injected failure on rank 1" in failed["error"]
    assert failed["metrics"]["failed_ranks"][0] == 1
    printed = capsys.readouterr()
    assert "test_ddp_raise world size 2: error (rank 1 raised first" in printed.err
    assert "4 records appended" in printed.out and "efficiency" in printed.out
    assert_nothing_left()


@needs_two_cores
def test_the_ranks_the_agent_stops_say_where_they_were():
    records = run_ddp(["test_ddp_exit"], DDPConfig(**QUICK))
    assert [r["status"] for r in records] == ["error", "error"]
    two = records[1]
    assert two["metrics"]["failed_ranks"] == [0] and two["metrics"]["stopped_ranks"] == [1]
    assert two["error"].startswith("rank 0 exit status 3 first")
    rank_1 = two["error"][two["error"].index("rank 1 was stopped when the launch ended; it was at"):]
    assert "in forward" in rank_1 and "ddp_faults.py" in rank_1
    assert_nothing_left()


@pytest.mark.slow
@needs_two_cores
def test_a_rank_that_hangs_is_stopped_by_its_watchdog_and_named():
    started = time.monotonic()
    (one, two) = run_ddp(["test_ddp_hang"], DDPConfig(**{**QUICK, "timeout_s": 20.0}))
    assert time.monotonic() - started < 200   # its subject: the 20 s watchdog
    assert one["status"] == "ok" and two["status"] == "timeout"
    # Whichever watchdog fires first (rank 0's, waiting in the all-reduce, or rank 1's), both ranks' stacks are told.
    assert two["metrics"]["hung_ranks"] and sorted(two["metrics"]["hung_ranks"] + two["metrics"]["stopped_ranks"]) == [0, 1]
    assert "no result within 20 s, stopped by its watchdog" in two["error"]
    rank_1 = two["error"][two["error"].index("rank 1 "):]
    assert "in forward" in rank_1 and "ddp_faults.py" in rank_1   # where it hung
    assert_nothing_left()


def _signal_when_ranks_run(sig: int) -> threading.Thread:
    """Send ``sig`` to this process once a rank (a grandchild) exists and has had a moment to start."""
    def wait_and_signal():
        deadline = time.monotonic() + 120
        while not leftover_processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        os.kill(os.getpid(), sig)

    thread = threading.Thread(target=wait_and_signal, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_stops_every_rank_and_the_run(sig, capsys, tmp_path):
    out, handler = tmp_path / "r.jsonl", signal.getsignal(sig)
    thread = _signal_when_ranks_run(sig)
    started = time.monotonic()
    code = cli.main(["ddp", "--workloads", "test_hang", "--nproc", "1", "--import", FAULTS,
                     "--timeout", "900", "--out", str(out)])
    thread.join()
    assert code == 130 and time.monotonic() - started < 300   # the signal ended it, not the 900 s timeout
    assert "interrupted" in capsys.readouterr().err
    assert signal.getsignal(sig) is handler   # the agent's handlers are gone again
    assert_nothing_left()


@pytest.mark.slow
@needs_two_cores
def test_a_launcher_killed_with_sigkill_takes_its_ranks_along(tmp_path):
    """Rank 1 hangs in its step and rank 0 waits for it in a collective when the launcher is killed: both ranks,
    the fork server and the resource tracker are gone long before the ranks' own timeout."""
    name, value = new_mark()
    launcher = subprocess.Popen(
        [sys.executable, "-m", "refbench", "ddp", "--workloads", "test_ddp_hang", "--nproc", "2", "--import", FAULTS,
         "--iters", "2", "--warmup", "0", "--check-steps", "1", "--profile-steps", "0", "--timeout", "600",
         "--out", str(tmp_path / "r.jsonl")],
        cwd=Path(__file__).resolve().parents[2], env={**os.environ, "TMPDIR": str(tmp_path), name: value},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    # the launcher, its cleanup watcher, the resource tracker, the fork server and two ranks
    assert wait_until(lambda: len(marked(name, value)) >= 6, 300), "world size 2 never started"
    time.sleep(2.0)
    launcher.kill()
    launcher.wait()
    assert wait_until(lambda: not marked(name, value), 120), "processes outlived the launcher"
    assert not list(tmp_path.glob("refbench-ddp-*")) and not list(tmp_path.glob("pymp-*"))


@pytest.mark.slow
def test_two_nodes_meet_at_node_0s_rendezvous(tmp_path):
    """Two `refbench ddp` processes on this machine as nodes 0 and 1 of a static rendezvous."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    common = [sys.executable, "-m", "refbench", "ddp", "--workloads", "mlp", "--nproc", "1", "--nnodes", "2",
              "--rdzv-endpoint", f"127.0.0.1:{port}", "--iters", "3", "--warmup", "1", "--rdzv-timeout", "120"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    nodes = [subprocess.Popen(common + ["--node-rank", str(rank), "--out", str(tmp_path / f"node{rank}.jsonl")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in (0, 1)]
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    records = read_results(tmp_path / "node0.jsonl")
    assert [(r["variant"]["world_size"], r["variant"]["nnodes"], r["status"]) for r in records] == [
        (1, 1, "ok"), (2, 2, "ok")]
    assert records[1]["metrics"]["correctness"]["compared"] and records[1]["metrics"]["scaling_efficiency"] > 0
    assert not (tmp_path / "node1.jsonl").exists() and "node 0 writes the records" in outputs[1]


def test_the_leftover_check_sees_a_process_left_behind():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert child.pid in leftover_processes()
    finally:
        child.kill()
        child.wait()
    assert child.pid not in leftover_processes()


@pytest.mark.gpu
def test_one_gpu_rank_under_nccl_trains_like_one_process():
    records = run_ddp(["lenet5", "resnet18_cifar"], DDPConfig(**{**QUICK, "nproc": 1, "backend": "cuda",
                                                                  "sync_batchnorm": True}))
    for record in records:
        assert record["status"] == "ok" and record["variant"]["dist_backend"] == "nccl"
        assert record["metrics"]["correctness"]["compared"] and record["metrics"]["peak_mem_kind"].startswith("peak_allocated")


def test_records_name_the_ranks_threads_not_the_launchers(tmp_path):
    """A ddp record's machine is the ranks' (1 thread each), so it compares with `run` records of 1 thread."""
    from refbench.harness.machine import collect_env

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        (record,) = run_ddp(["hpo_rf_wine"], DDPConfig(nproc=1, threads=1))
    finally:
        torch.set_num_threads(before)
    assert record["env"]["threads"] == 1
    assert record["env"]["env_key"] == collect_env(threads=1)["env_key"] != collect_env(threads=2)["env_key"]
