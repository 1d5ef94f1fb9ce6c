"""A node lost mid-cell: Ray runs the cell once more on another node; a second loss ends it as a record."""
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the Ray executor needs Ray: pip install 'refbench[ray]'")

from ray._private import ray_constants  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from refbench.errors import EXIT_INCOMPLETE  # noqa: E402
from refbench.records.store import read_results  # noqa: E402
from tests.fixtures.processes import wait_until  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _ancestors(pid: int) -> list[int]:
    chain = []
    while pid > 1:
        chain.append(pid)
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return chain


@pytest.mark.slow
def test_a_cell_whose_node_is_lost_runs_again_elsewhere_and_a_second_loss_is_a_record(tmp_path, monkeypatch):
    pidfile, out = tmp_path / "cell.pid", tmp_path / "r.jsonl"
    monkeypatch.setenv("REFBENCH_TEST_PIDFILE", str(pidfile))     # the nodes' workers inherit it
    monkeypatch.delenv("REFBENCH_TEST_HOLD", raising=False)       # the cell hangs for good
    handler = signal.getsignal(signal.SIGTERM)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    signal.signal(signal.SIGTERM, handler)
    try:
        nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]   # only these two can take the cell
        cluster.wait_for_nodes()
        driver = subprocess.Popen(
            [sys.executable, "-m", "refbench", "run", "--workloads", "test_hang", "--modes", "infer", "--batch-sizes",
             "2", "--import", "tests.fixtures.faulty_workloads", "--executor", "ray", "--address", cluster.address,
             "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        cells = []
        while nodes:       # the node that runs the cell is lost; the first time, the other node takes it up
            assert wait_until(lambda: pidfile.exists() and pidfile.read_text().isdigit()
                              and int(pidfile.read_text()) not in cells, 240), driver.communicate()[1][-2000:]
            cells.append(int(pidfile.read_text()))
            ancestors = _ancestors(cells[-1])
            (lost,) = [n for n in nodes if n.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
                       in ancestors]
            cluster.remove_node(lost, allow_graceful=False)
            nodes.remove(lost)
        assert driver.wait(300) == EXIT_INCOMPLETE, driver.communicate()[1][-2000:]
    finally:
        cluster.shutdown()
    (record,) = read_results(out)
    assert record["status"] == "error" and "the Ray node it ran on was lost 2 times" in record["error"]
    assert "`--resume` measures it again" in record["error"]
