"""The tolerance table and the fp64 comparison."""
import pytest
import torch
from torch import nn

from refbench.harness.correctness import TOLERANCES, compare, dropout_off, fp64_copy, reference_step, tolerance


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


def test_an_error_within_a_multiple_of_eager_fp32s_own_error_passes():
    reference = {"output[0]": torch.ones(50, dtype=torch.float64)}
    eager = {"output[0]": torch.full((50,), 1 + 1e-3)}                       # an ill-conditioned step
    assert compare({"output[0]": torch.full((50,), 1 + 2e-3)}, reference, "fp32", eager).ok
    assert not compare({"output[0]": torch.full((50,), 1 + 5e-3)}, reference, "fp32", eager).ok
