"""The emulated rounding: formats, operators, accumulation and kinks, against real low-precision arithmetic."""
import pytest
import torch
import torch.nn.functional as F

from refbench.harness.rounding import Kinks, Rounding, round_to


def rel(x, ref):
    return ((x.double() - ref).norm() / ref.norm()).item()


def test_each_format_rounds_like_torch_does():
    x = torch.randn(10_000, dtype=torch.float64) * torch.logspace(-3, 3, 10_000, dtype=torch.float64)
    assert torch.equal(round_to(x, "fp32"), x.float().double())
    single = x.float().double()   # from float32, as torch's own conversions do
    assert torch.equal(round_to(single, "bf16"), single.bfloat16().double())
    normal = single[single.abs() >= 2.0 ** -14]   # float16's normal range; the emulation keeps float32's
    assert torch.equal(round_to(normal, "fp16"), normal.half().double())


def test_tf32_keeps_ten_bits_ties_to_even():
    one = torch.tensor([1.0, 1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11, 1 + 2.0 ** -10 + 2.0 ** -12], dtype=torch.float64)
    assert round_to(one, "tf32").tolist() == [1.0, 1.0, 1 + 2 * 2.0 ** -10, 1 + 2.0 ** -10]


@pytest.mark.parametrize("k", [64, 1024, 25088])
def test_an_emulated_float32_matmul_errs_as_much_as_a_real_one(k):
    """Within a factor of 3 of the real float32 matmul's error, either way (one rounding of the result
    alone is 5 to 13 times too small on this CPU)."""
    torch.manual_seed(0)
    a, b = torch.randn(32, k), torch.randn(k, 128)
    exact = a.double() @ b.double()
    with Rounding("fp32"):
        emulated = a.double() @ b.double()
    ratio = rel(a @ b, exact) / rel(emulated, exact)
    assert 1 / 3 < ratio < 3, ratio


def test_an_emulated_convolution_and_its_gradients_err_as_much_as_real_ones():
    torch.manual_seed(0)
    x, w = torch.randn(8, 16, 14, 14), torch.randn(32, 16, 3, 3)
    grad = torch.randn(8, 32, 14, 14, dtype=torch.float64)

    def run(x, w):
        x, w = x.clone().requires_grad_(), w.clone().requires_grad_()
        y = F.conv2d(x, w, padding=1)
        return (y, *torch.autograd.grad(y, (x, w), grad.to(y.dtype)))

    exact = run(x.double(), w.double())
    with Rounding("fp32"):
        emulated = run(x.double(), w.double())
    for real, emu, ref in zip(run(x, w), emulated, exact):
        assert 1 / 4 < rel(real, ref) / rel(emu, ref) < 4


def test_autocast_rounding_keeps_matmul_results_in_bf16_and_softmax_in_float32():
    torch.manual_seed(0)
    a, b = torch.randn(16, 64, dtype=torch.float64), torch.randn(64, 16, dtype=torch.float64)
    with Rounding("bf16"):
        product = a @ b
        activated = torch.relu(product)
        probabilities = torch.softmax(product, dim=1)
        mixed = product + a[:, :16]            # a bf16 and a float32 tensor: float32
    assert torch.equal(product, product.bfloat16().double())
    assert torch.equal(activated, activated.bfloat16().double())
    assert not torch.equal(probabilities, probabilities.bfloat16().double())
    assert torch.equal(probabilities, probabilities.float().double())
    assert not torch.equal(mixed, mixed.bfloat16().double())


def test_in_place_results_are_rounded_and_views_still_alias():
    x = torch.zeros(4, dtype=torch.float64)
    with Rounding("fp32"):
        x.add_(0.1)
        view = x[1:3]
        view.mul_(3.0)
    expected = torch.full((4,), 0.1).double()
    expected[1:3] = (expected[1:3] * 3.0).float().double()
    assert torch.equal(x, expected)


def _gradient_through(kink, **kwargs):
    """d/dx of kink(3x - y) at x = (0.1, 1): the first pre-activation is 1e-12 in float64, within rounding of
    zero in float32; the second is 1, far from it."""
    x = torch.tensor([0.1, 1.0], dtype=torch.float64)
    y = torch.tensor([3 * 0.1 - 1e-12, 2.0], dtype=torch.float64)
    leaf = x.clone().requires_grad_()
    kink(leaf * 3.0 - y, **kwargs).sum().backward()
    return leaf.grad.tolist()


@pytest.mark.parametrize("kink, kwargs, other", [
    (torch.relu, {}, 0.0), (F.leaky_relu, {"negative_slope": 0.25}, 0.75),
    (lambda t: torch.relu_(t * 1.0), {}, 0.0),
])
def test_a_kink_within_rounding_of_zero_takes_the_other_branch(kink, kwargs, other):
    kinks = Kinks()
    with kinks:
        assert _gradient_through(kink, **kwargs) == [3.0, 3.0]   # the reference: both pass
    with Rounding("fp32"):
        assert _gradient_through(kink, **kwargs) == [3.0, 3.0]   # one rounding lands on the same side
    with Rounding("fp32", kinks.inputs):
        assert _gradient_through(kink, **kwargs) == [other, 3.0]
