"""gpu-check's run: steps resume from the folder's results, and a call killed at any moment returns whole files."""
import json
import os
import random
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from refbench.gpu_check import steps
from refbench.gpu_check.plan import Step, _softmax
from refbench.gpu_check.run import gpu_folder_name
from refbench.records.store import read_results

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name, folder", [("NVIDIA H200", "nvidia-h200"), ("NVIDIA H100 80GB HBM3", "nvidia-h100-80gb-hbm3")])
def test_reports_go_to_a_folder_per_gpu_model(name, folder):
    assert gpu_folder_name(name) == folder


def test_a_step_measures_only_what_the_folder_lacks(tmp_path, capsys):
    start_s, cells, _ = _softmax("cpu")
    step = Step("softmax", 1e9, start_s, [c for c in cells if c.spec["backend"] in ("torch", "triton")][:3]).fit()
    (tmp_path / "plan.json").write_text(json.dumps({"device": "cpu", "steps": [step.to_dict()]}))
    assert steps.main(["softmax", str(tmp_path), "--limit", "60"]) == 0
    assert steps.main(["softmax", str(tmp_path), "--limit", "60"]) == 0
    printed = capsys.readouterr().out
    assert "3 of 3 planned cells to measure" in printed and "0 of 3 planned cells to measure" in printed
    assert len(read_results(tmp_path / "kernels.jsonl")) == 3


def _members(path):
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


@pytest.mark.slow
def test_a_rehearsal_killed_at_a_random_moment_returns_whole_files_and_resumes(tmp_path):
    folder, out = tmp_path / "gpu-check", tmp_path / "out"
    command = [sys.executable, "-m", "refbench.gpu_check", "--rehearse", "--budget", "120", "--folder", str(folder),
               "--copy-to", str(out)]
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    call = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    time.sleep(random.uniform(20, 50))
    os.killpg(call.pid, signal.SIGKILL)   # as the device tool ends a call at its time limit
    call.wait()
    returned = sorted(p.name for p in out.iterdir() if p.is_file())
    assert returned == ["gpu-check.tar.gz", "summary.txt"]
    members = _members(out / "gpu-check.tar.gz")
    assert any(name.endswith("plan.json") for name in members)
    for name, data in members.items():
        if name.endswith(".jsonl"):
            assert all(json.loads(line) for line in data.decode().splitlines())
        if name.endswith(".json"):
            json.loads(data)
    # A second call resumes: every planned kernel cell measured once.
    done = subprocess.run([*command, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert "steps ok" in done.stdout, done.stdout + done.stderr
    plan = json.loads((folder / "plan.json").read_text())
    kernels = read_results(folder / "kernels.jsonl")
    planned = sum(len(s["kept"]) for s in plan["steps"] if s["name"] in ("softmax", "conv2d"))
    keys = [(r["workload"], r["backend"], json.dumps(r["variant"], sort_keys=True)) for r in kernels]
    assert len(keys) == len(set(keys)) == planned
