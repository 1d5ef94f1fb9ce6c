"""The tolerance table and the fp64 comparison."""
import pytest
import torch
from torch import nn

from refbench.harness.correctness import (ALLOWANCE_MULTIPLE, TOLERANCES, compare, dropout_off, eager_agreement, fp64_copy,
                                          reference_step, tolerance)


def test_the_table_orders_precisions_from_tight_to_loose():
    assert TOLERANCES["fp64"] < TOLERANCES["fp32"] < TOLERANCES["tf32"] <= TOLERANCES["bf16"] <= TOLERANCES["int8"]
    assert TOLERANCES["fp32"] < TOLERANCES["fp16"] < TOLERANCES["bf16"]
    with pytest.raises(ValueError, match="no tolerance for precision 'fp8'"):
        tolerance("fp8")


def test_an_error_passes_the_loose_precisions_and_fails_fp32():
    reference = {"output[0]": torch.randn(64, 10, dtype=torch.float64)}
    actual = {"output[0]": (reference["output[0]"] * (1 + 1e-3)).float()}   # relative error 1e-3
    assert not compare(actual, reference, "fp32").ok
    for precision in ("tf32", "fp16", "bf16", "int8"):
        assert compare(actual, reference, precision).ok
    check = compare(actual, reference, "fp32")
    assert check.max_rel_err == pytest.approx(1e-3, rel=1e-3) and check.worst == "output[0]"
    assert "relative error 1.00e-03 > 1e-04 (fp32)" in check.problems[0]


def test_nan_or_inf_fails_even_without_a_reference():
    assert compare({"grad:w": torch.tensor([1.0, float("inf")])}, None, "bf16").problems == ["NaN/Inf in grad:w"]
    assert compare({"output[0]": torch.tensor([float("nan")])}, {"output[0]": torch.tensor([float("nan")])},
                   "int8").problems == ["NaN/Inf in output[0]"]


def test_integer_outputs_must_match_exactly():
    assert compare({"output[0]": torch.tensor([1, 2])}, {"output[0]": torch.tensor([1, 2])}, "fp32").ok
    assert not compare({"output[0]": torch.tensor([1, 3])}, {"output[0]": torch.tensor([1, 2])}, "bf16").ok


def _model():
    return nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2))


def test_reference_switches_dropout_off_and_is_deterministic():
    model = _model().train()
    batch = (torch.randn(3, 4),)
    reference = reference_step(_model, fp64_copy(model.state_dict()), batch, lambda m, b: m(b[0]), train=False)
    with dropout_off(model):
        assert compare({"output[0]": model(batch[0])}, reference, "fp32").ok
    assert model[1].training  # restored


def test_a_step_that_draws_random_numbers_has_no_reference():
    model = _model()
    noisy = lambda m, b: m(b[0] + torch.randn_like(b[0]))  # noqa: E731
    assert reference_step(_model, fp64_copy(model.state_dict()), (torch.randn(3, 4),), noisy, train=True) is None


def test_a_tensor_that_is_zero_in_exact_arithmetic_is_judged_against_the_step_scale():
    reference = {"grad:w": torch.ones(100, dtype=torch.float64), "grad:b": torch.full((10,), 1e-17, dtype=torch.float64)}
    actual = {"grad:w": torch.ones(100), "grad:b": torch.full((10,), 1e-9)}   # rounding noise around zero
    assert compare(actual, reference, "fp32").ok
    actual["grad:b"] = torch.full((10,), 1e-2)                               # not noise any more
    assert not compare(actual, reference, "fp32").ok


def test_an_error_within_the_multiple_of_the_emulated_error_passes_and_is_recorded():
    reference = {"output[0]": torch.ones(50, dtype=torch.float64)}
    emulated = {"output[0]": torch.full((50,), 1 + 1e-3, dtype=torch.float64)}   # an ill-conditioned step
    inside = compare({"output[0]": torch.full((50,), 1 + 4e-3)}, reference, "fp32", emulated)
    assert inside.ok and inside.emulated == "fp32"
    (allowed,) = inside.metrics()["allowed"]
    assert allowed["tensor"] == "output[0]" and allowed["tolerance"] == 1e-4 and allowed["multiple"] == ALLOWANCE_MULTIPLE
    assert allowed["rel_err"] == pytest.approx(4e-3, rel=1e-3)
    assert allowed["emulated_rel_err"] == pytest.approx(1e-3, rel=1e-9)
    outside = compare({"output[0]": torch.full((50,), 1 + 6e-3)}, reference, "fp32", emulated)
    assert outside.problems == ["output[0]: relative error 6.00e-03 > 1e-04 (fp32) and > 5 x 1.00e-03 (fp32 emulated "
                                "in float64)"]


def test_the_emulated_run_is_made_only_when_a_tensor_misses_its_tolerance():
    reference = {"output[0]": torch.ones(50, dtype=torch.float64)}
    made = []
    check = compare({"output[0]": torch.ones(50)}, reference, "fp32", lambda: made.append(1) or reference)
    assert check.ok and not made and "emulated" not in check.metrics()


def test_agreement_with_eager_fp32_is_reported_and_never_decides():
    reference = {"output[0]": torch.ones(50, dtype=torch.float64)}
    wrong = {"output[0]": torch.full((50,), 1 + 1e-2)}
    check = compare(wrong, reference, "fp32")
    figures = eager_agreement(wrong, reference, dict(wrong), "fp32")   # eager fp32 shares the fault
    assert not check.ok and figures["agrees"] and figures["max_rel_diff"] == 0.0
    assert figures["max_rel_err"] == pytest.approx(1e-2, rel=1e-3)
    backend_off = {"output[0]": torch.full((50,), 1 + 5e-2)}
    assert not eager_agreement(backend_off, reference, dict(wrong), "fp32")["agrees"]
