"""The metric table owns every metric name: a record cannot carry one it does not know."""
import pytest

from refbench.records import metrics
from refbench.records.schema import make_record


def _record(**metric_values):
    return make_record(run_id="r", env={}, workload="mlp", backend="cpu", mode="train", status="ok",
                       metrics=metric_values)


def test_a_metric_the_table_does_not_know_is_refused():
    with pytest.raises(ValueError, match="samples_per_second"):
        _record(samples_per_second=1.0)


def test_nested_metrics_are_named_by_their_flattened_names_and_groups_take_any_field():
    record = _record(latency_ms={"median": 1.0, "samples": [1.0, 1.1]}, recipe_settings={"lr": 0.1, "any": 1})
    assert record["metrics"]["latency_ms"]["median"] == 1.0
    with pytest.raises(ValueError, match="latency_ms.medain"):
        _record(latency_ms={"medain": 1.0})


def test_every_judged_metric_says_which_way_is_better_and_belongs_to_a_gate_family():
    from refbench.regress.gates import GATES

    assert metrics.JUDGED
    for metric in metrics.JUDGED:
        assert metric.better in ("higher", "lower") and metric.family in GATES, metric.name


def test_a_metric_named_twice_or_of_no_family_is_an_error():
    with pytest.raises(ValueError, match="twice"):
        metrics._index([metrics.METRICS[0], metrics.METRICS[0]])
    with pytest.raises(ValueError, match="unknown family"):
        metrics._index([metrics.Metric("x", "", "speed", "x")])
