"""Where cells run (--executor, --address, --node-label, --node-resource): bad input is one line, Ray or not."""
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from refbench.cli import main

ROOT = Path(__file__).resolve().parents[2]
FAULTY = "tests.fixtures.faulty_workloads"
RUN = ["run", "--workloads", "test_tiny", "--modes", "infer", "--batch-sizes", "2", "--import", FAULTY]


def _one_line_error(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("refbench: error: "), err
    return err


@pytest.mark.parametrize("command", [
    [*RUN, "--out", "{tmp}/r.jsonl"],
    ["nightly", "--history", "{tmp}/h", "--workloads", "test_tiny", "--import", FAULTY],
    ["converge", "--workloads", "mlp", "--seeds", "1", "--out", "{tmp}/c.jsonl"],
])
def test_executor_ray_without_ray_says_how_to_install_it(command, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)      # what `import ray` does where Ray is not installed
    err = _one_line_error([a.format(tmp=tmp_path) for a in command] + ["--executor", "ray"], capsys)
    assert "--executor ray needs Ray, which is not installed: pip install 'refbench[ray]'" in err


@pytest.mark.parametrize("extra", [["--address", "10.0.0.1:6379"], ["--node-label", "gpu=H100"],
                                   ["--node-resource", "H100=1"]])
def test_cluster_placement_without_a_cluster_is_refused(extra, tmp_path, capsys):
    err = _one_line_error([*RUN, "--out", str(tmp_path / "r.jsonl"), *extra], capsys)
    assert "--address, --node-label and --node-resource place cells on a cluster: add --executor ray" in err


@pytest.mark.parametrize("extra, message", [
    (["--node-label", "gpu"], "argument --node-label: expected KEY=VALUE such as ray.io/accelerator-type=H100"),
    (["--node-label", "=H100"], "argument --node-label: expected KEY=VALUE"),
    (["--node-resource", "H100=0"], "argument --node-resource: expected NAME=AMOUNT such as H100=1, got 'H100=0'"),
    (["--node-resource", "=2"], "argument --node-resource: expected NAME=AMOUNT"),
    (["--node-label", "gpu=a", "--node-label", "gpu=b"], "--node-label gpu is given twice; give each once"),
    (["--executor", "slurm"], "argument --executor: invalid choice: 'slurm'"),
    (["--address", ""], "argument --address: expected a value"),
])
def test_bad_placement_options_are_one_line(extra, message, tmp_path, capsys):
    assert message in _one_line_error([*RUN, "--out", str(tmp_path / "r.jsonl"), "--executor", "ray", *extra], capsys)


def test_an_address_nothing_answers_at_is_one_line_not_minutes_of_retries(tmp_path):
    pytest.importorskip("ray", reason="the Ray executor needs Ray: pip install 'refbench[ray]'")
    with socket.socket() as closed:       # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    done = subprocess.run([sys.executable, "-m", "refbench", *RUN, "--out", str(tmp_path / "r.jsonl"), "--executor",
                           "ray", "--address", f"127.0.0.1:{port}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"refbench: error: cannot reach the Ray cluster at 127.0.0.1:{port}: Connection "
                                   f"refused; start it with `ray start --head` there, or give the address it printed "
                                   f"with --address")
