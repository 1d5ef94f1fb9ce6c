"""The noise check: a busy machine or steps that vary mark a cell unstable, with the reason."""
import subprocess
import sys
import time

from refbench.harness.noise import LoadProbe, is_unstable
from refbench.records.schema import UNSTABLE_CV


def test_other_processes_using_the_spare_cores_make_the_cell_unstable():
    probe = LoadProbe().start()
    hogs = [subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 1.5\nwhile time.time() < end: pass"])
            for _ in range(2)]
    for hog in hogs:
        hog.wait()
    noise = probe.stop(cv=0.01, threads=1)
    assert noise["other_processes_cores"] > 0.75, noise
    assert is_unstable(noise) and any("other processes kept" in r for r in noise["reasons"])


def test_varying_steps_make_the_cell_unstable_whatever_the_load():
    noise = LoadProbe().start().stop(cv=UNSTABLE_CV * 2, threads=1)
    assert noise["reasons"][0] == f"step times vary (CV {UNSTABLE_CV * 2:.2f} > {UNSTABLE_CV})"


def test_a_cell_with_its_own_work_only_counts_no_other_processes():
    probe = LoadProbe().start()
    end = time.perf_counter() + 0.5
    while time.perf_counter() < end:   # this process's own CPU time is not "other processes"
        pass
    noise = probe.stop(cv=0.0, threads=1)
    assert "other_processes_cores" in noise and noise["load_average_1m"] is not None


def test_the_run_warns_in_one_line_counting_why():
    from refbench.harness.noise import busy_warning

    def record(kinds):
        return {"metrics": {"unstable": bool(kinds), "noise": {"kinds": kinds}}}

    records = [record(["busy"]), record(["busy", "varying"]), record([])]
    line = busy_warning(records)
    assert line.startswith("warning: 2 of 3 cells are marked unstable (1 had varying step times, 2 ran while other "
                           "processes took the free cores)") and "\n" not in line
    assert busy_warning([record([])]) is None
