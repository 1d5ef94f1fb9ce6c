"""Seed summaries and parity verdicts, computed from recorded curves."""
import pytest

from refbench.run.parity import MARGINS, seed_final, group_summary, margin_for, parity, seed_summary
from refbench.models import get_workload, list_models
from refbench.errors import RefbenchError


def seed_record(seed, finals, *, status="ok", metric="accuracy", task="image-classification", higher=True,
                threshold=0.85, steady=10.0, reached_at=None):
    """A per-seed converge record whose curve ends at ``finals[-1]``."""
    curve = [{"epoch": i + 1, "step": 100 * (i + 1), "train_s": 1.0 * (i + 1), "train_loss": 0.5,
              "metrics": {metric: value}} for i, value in enumerate(finals)]
    return {"workload": "w", "variant": {}, "backend": "b", "status": status, "error": None if status == "ok" else "boom",
            "dataset": "d", "metrics": {"seed": seed, "curve": curve, "target_metric": metric, "task": task,
                                        "higher_is_better": higher, "threshold": threshold, "target": "quick",
                                        "recipe": "fast", "budget": {"max_epochs": 1, "max_steps": None},
                                        "time_to_target_s": reached_at, "steady_train_s": steady,
                                        "steps_to_target": None if reached_at is None else 100,
                                        "train_s": steady + 1, "eval_s": 1.0, "wall_s": steady + 3,
                                        "first_step_s": 1.0}}


def test_the_final_point_of_the_curve_is_the_seeds_value():
    assert seed_final(seed_record(0, [0.9, 0.8])) == 0.8
    assert seed_final(seed_record(0, [0.9, None])) != seed_final(seed_record(0, [0.9, None]))   # NaN


def test_seed_summary_gives_mean_sample_std_and_min():
    summary = seed_summary([seed_record(s, [v]) for s, v in ((2, 0.86), (0, 0.84), (1, 0.88))])
    assert summary["seeds"] == [0, 1, 2] and summary["values"] == [0.84, 0.88, 0.86]
    assert summary["mean"] == pytest.approx(0.86) and summary["std"] == pytest.approx(0.02)
    assert summary["min"] == 0.84 and summary["max"] == 0.88 and summary["n"] == 3


def test_the_mean_decides_the_target_not_any_one_seed():
    runs = [seed_record(0, [0.99], reached_at=5.0), seed_record(1, [0.70])]
    status, error, metrics = group_summary(runs)
    assert status == "missed" and "the mean over 2 seeds is 0.8450" in error and "1 of 2 seeds crossed" in error
    assert metrics["reached"] is False and metrics["time_to_target_s"] == 5.0 and metrics["steps_to_target"] == 100
    status, _, metrics = group_summary([seed_record(0, [0.86]), seed_record(1, [0.84])])
    assert status == "ok" and metrics["reached"] is True and metrics["seeds"]["mean"] == pytest.approx(0.85)


def test_a_seed_that_did_not_finish_gives_the_group_its_status():
    status, error, metrics = group_summary([seed_record(0, [0.9]), seed_record(1, [], status="timeout")])
    assert status == "timeout" and error == "seed 1: boom" and metrics["seeds"]["n"] == 1


def test_a_diverged_seed_misses():
    status, error, _ = group_summary([seed_record(0, [0.9]), seed_record(1, [None])])
    assert status == "missed" and "a seed diverged" in error


def test_classifier_parity_is_half_a_point_on_the_common_seeds():
    base = [seed_record(s, [0.880]) for s in (0, 1)]
    within = [seed_record(s, [0.876], steady=5.0) for s in (0, 1, 2)]
    verdict = parity(within, base, base="cpu")
    assert verdict["seeds"] == [0, 1] and verdict["margin"] == 0.005 and verdict["margin_rule"] == "0.5 points"
    assert verdict["delta"] == pytest.approx(-0.004) and verdict["ok"] and verdict["flag"] is None
    assert verdict["speedup"] == 2.0 and verdict["faster"]


def test_a_faster_backend_that_misses_parity_is_flagged():
    base = [seed_record(s, [0.880]) for s in (0, 1)]
    worse = [seed_record(s, [0.870], steady=5.0) for s in (0, 1)]
    verdict = parity(worse, base, base="cuda")
    assert not verdict["ok"] and verdict["flag"] == "faster than cuda (2.00x) but misses parity"
    slower = parity([seed_record(s, [0.870], steady=20.0) for s in (0, 1)], base, base="cuda")
    assert not slower["ok"] and slower["flag"] is None


def test_relative_margins_for_fid_ratio_and_exact_match():
    fid = dict(metric="fid_fmnist_ratio", task="image-generation", higher=False, threshold=0.3)
    base = [seed_record(0, [0.20], **fid)]
    assert parity([seed_record(0, [0.215], **fid)], base, base="cpu")["ok"]        # 7.5% worse: within 10%
    verdict = parity([seed_record(0, [0.23], **fid)], base, base="cpu")            # 15% worse
    assert not verdict["ok"] and verdict["delta"] == pytest.approx(-0.03) and verdict["margin"] == pytest.approx(0.02)
    exact = dict(metric="sequence_accuracy", task="seq2seq")
    assert parity([seed_record(0, [0.965], **exact)], [seed_record(0, [0.98], **exact)], base="cpu")["ok"]
    assert not parity([seed_record(0, [0.955], **exact)], [seed_record(0, [0.98], **exact)], base="cpu")["ok"]
    tokens = dict(metric="accuracy", task="token-classification")
    assert margin_for("token-classification", "accuracy").relative
    assert parity([seed_record(0, [0.926], **tokens)], [seed_record(0, [0.93], **tokens)], base="cpu")["ok"]
    # 0.48 points behind: within a classifier's 0.5 points, not within 0.5% of a token accuracy of 0.93
    assert not parity([seed_record(0, [0.9252], **tokens)], [seed_record(0, [0.93], **tokens)], base="cpu")["ok"]


def test_parity_without_base_runs_says_so():
    verdict = parity([seed_record(0, [0.9])], [seed_record(1, [0.9])], base="cpu")
    assert verdict["ok"] is None and "no finished run on these seeds" in verdict["note"]


def test_the_summary_carries_parity_and_the_cost_of_the_documents_bugs():
    fixed = [seed_record(s, [0.88], reached_at=2.0) for s in (0, 1)]
    written = [seed_record(s, [0.80], reached_at=None) for s in (0, 1)]
    status, _, metrics = group_summary(written, base="cpu", base_records=written, fixed_records=fixed)
    assert status == "missed" and metrics["parity"]["ok"] and metrics["parity"]["delta"] == 0
    cost = metrics["as_written"]
    assert cost["delta"] == pytest.approx(-0.08) and cost["fixed_mean"] == 0.88 and cost["mean"] == 0.80
    assert cost["fixed_time_to_target_s"] == 2.0 and cost["time_to_target_s"] is None and cost["reached"] == 0


def test_every_registered_target_metric_has_a_margin():
    for name in list_models():
        workload = get_workload(name)
        for target in workload.targets.values():
            margin_for(workload.task, target.metric)
    with pytest.raises(RefbenchError, match="no parity margin for the metric 'mystery_score'"):
        margin_for("image-classification", "mystery_score")
    assert all(m.size > 0 for m in MARGINS.values())
