"""gpu-check's rehearsal catches what would waste a GPU window: a bad command line, a missing module or file."""
from pathlib import Path

import pytest

from refbench import gpu_check
from refbench.gpu_check import Check, carry_problems, gpu_folder_name, plan, rehearse


def test_the_real_plan_parses_imports_and_fits_its_budget():
    steps = plan(Path("/tmp/gpu-check"), 480)
    assert sum(step.share for step in steps) <= 1.0
    assert [p for p in rehearse(steps) if "carry" not in p and ".carry" not in p] == []


def test_a_misspelt_option_and_a_missing_module_are_caught():
    steps = [Check("typo", ["run", "--workloadz", "mlp"], 0.5),
             Check("module", ["list"], 0.5, ("no_such_module_for_refbench",))]
    problems = [p for p in rehearse(steps) if ".carry" not in p]
    assert any(p.startswith("typo: `refbench run --workloadz mlp` does not parse") for p in problems)
    assert any(p.startswith("module: cannot import no_such_module_for_refbench") for p in problems)


def test_a_carry_folder_without_the_data_or_the_wheels_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "CARRY", tmp_path)
    monkeypatch.setattr(gpu_check, "CARRY_DATA", tmp_path / "data")
    monkeypatch.setattr(gpu_check, "CARRY_WHEELS", tmp_path / "wheels")
    problems = carry_problems()
    assert any("fashion-mnist/train-images-idx3-ubyte.gz is missing" in p for p in problems)
    assert any(p.startswith("no wheel of nox") for p in problems)
    (tmp_path / "data" / "fashion-mnist").mkdir(parents=True)
    for name in gpu_check.FASHION_FILES:
        (tmp_path / "data" / "fashion-mnist" / name).write_bytes(b"x")
    (tmp_path / "wheels").mkdir()
    for name in gpu_check.CARRY_PACKAGES:
        (tmp_path / "wheels" / f"{name.replace('-', '_')}-1.0-py3-none-any.whl").write_bytes(b"x")
    assert carry_problems() == []


@pytest.mark.parametrize("name, folder", [("NVIDIA H200", "nvidia-h200"), ("NVIDIA H100 80GB HBM3", "nvidia-h100-80gb-hbm3")])
def test_reports_go_to_a_folder_per_gpu_model(name, folder):
    assert gpu_folder_name(name) == folder
