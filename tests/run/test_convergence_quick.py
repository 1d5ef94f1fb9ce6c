"""Quick targets on real data, eager and compiled, as CI runs them (one thread)."""
import pytest
import torch

from refbench.run.convergence import converge
from refbench.run.converge import Convergence, run_convergence
from refbench.models import get_workload


def summaries(records):
    return {r["backend"]: r for r in records if "seeds" in r["metrics"]}


@pytest.mark.convergence
@pytest.mark.parametrize("name, seeds", [("mlp", 2), ("lenet5", 1)])
def test_quick_target_on_cpu_and_cpu_compile(name, seeds, real_data):
    """Both backends reach the quick target within its step budget, and compile gets a parity verdict.

    Dynamo fails on a recompile here instead of falling back to eager without a word, so a second
    compiled seed in the process proves each run compiled its own step.
    """
    import torch._dynamo

    workload = get_workload(name)
    dataset = real_data(workload.load_data, "test", dataset=workload.targets["quick"].dataset).dataset
    with torch._dynamo.config.patch(recompile_limit=1, fail_on_recompile_limit_hit=True):
        records = run_convergence(Convergence(workloads=[name], backends=["cpu+compile"], seeds=seeds))
    assert all(r["status"] == "ok" for r in records if "seed" in r["metrics"]), [r["error"] for r in records]
    by_backend = summaries(records)
    for backend in ("cpu", "cpu+compile"):
        summary = by_backend[backend]
        assert summary["status"] == "ok" and summary["dataset"] == dataset, summary["error"]
        assert summary["metrics"]["seeds"]["n"] == seeds and summary["metrics"]["time_to_target_s"] > 0
    parity = by_backend["cpu+compile"]["metrics"]["parity"]
    assert parity["base"] == "cpu" and parity["seeds"] == list(range(seeds)) and parity["ok"] is not None


@pytest.mark.convergence
def test_same_seed_same_curve_on_real_data(real_data):
    def curve(seed):
        run = real_data(converge, "mlp", seed=seed, max_steps=60, eval_every_steps=20)
        return [(p.step, p.train_loss, p.metrics) for p in run.curve]

    first = curve(0)
    assert [step for step, _, _ in first] == [20, 40, 60]
    assert curve(0) == first and curve(1) != first
    assert torch.get_num_threads() == 1
