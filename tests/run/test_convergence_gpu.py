"""Convergence on a GPU: device-resident data, the loader path, and parity of the GPU backends against cuda."""
import pytest

from refbench.run.convergence import converge
from refbench.run.converge import Convergence, run_convergence
from refbench.models import get_workload

pytestmark = [pytest.mark.gpu, pytest.mark.convergence]


def test_gpu_backends_train_on_resident_data_with_parity(real_data):
    real_data(get_workload("lenet5").load_data, "test")
    records = run_convergence(Convergence(workloads=["lenet5"], seeds=1, max_steps=300,
                                          backends=["cuda+amp-bf16", "cuda+compile", "cudagraphs"]))
    runs = [r for r in records if "seed" in r["metrics"]]
    assert [r["backend"] for r in runs] == ["cuda", "cuda+amp-bf16", "cuda+compile", "cudagraphs"]
    assert all(r["status"] == "ok" and r["metrics"]["data_resident"] for r in runs), [r["error"] for r in runs]
    assert runs[3]["metrics"]["capture_s"] > 0
    parities = [r["metrics"]["parity"] for r in records if "seeds" in r["metrics"] and r["backend"] != "cuda"]
    assert [p["base"] for p in parities] == ["cuda"] * 3 and all(p["ok"] is not None for p in parities)


def test_a_split_that_does_not_fit_goes_through_the_loader(real_data):
    resident = real_data(converge, "mlp", backend="cuda", max_steps=100, eval_every_steps=50)
    loaded = converge("mlp", backend="cuda", max_steps=100, eval_every_steps=50, resident_fraction=0)
    assert resident.data_resident and not loaded.data_resident
    assert loaded.final == pytest.approx(resident.final, abs=0.01)
