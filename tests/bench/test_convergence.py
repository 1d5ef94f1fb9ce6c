import pytest

from bench.convergence import converge, converge_all
from bench.results import read_results
from reference_models import RefbenchError, get_workload


@pytest.mark.convergence
def test_lenet5_reaches_its_quick_target_on_fashion_mnist(real_data, tmp_path):
    """Document 000's LeNet-5: >= 85% test accuracy within 2 epochs on real Fashion-MNIST."""
    out = tmp_path / "converge.jsonl"
    results = real_data(converge_all, ["lenet5"], "quick", out=str(out), log=lambda line: None)
    (result,) = results
    assert result.reached and result.dataset in ("mnist", "fashion-mnist (stand-in for mnist)")
    assert result.best >= 0.85 and result.epochs_to_target <= 2
    (record,) = read_results(out)
    assert record["mode"] == "converge" and record["status"] == "ok"
    assert record["metrics"]["accuracy"] == result.best
    assert record["metrics"]["curve"][0]["metrics"]["accuracy"] > 0.5


def test_a_missed_target_is_reported_not_raised(real_data):
    result = real_data(converge, get_workload("mlp"), "quick", budget_s=0.0)
    assert not result.reached and result.time_to_target_s is None
    assert len(result.curve) == 1 and result.curve[0].step == 1


def test_unknown_target_is_a_clear_error():
    with pytest.raises(RefbenchError, match="has no target 'nightly'"):
        converge(get_workload("mlp"), "nightly")
