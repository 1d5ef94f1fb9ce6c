"""refbench.kernels.conv2d against fp64 F.conv2d: forward, both gradients, errors, module swap.

Without CUDA the root conftest runs Triton's interpreter, so shapes are tiny;
they still cover every index path: strides, paddings, dilations, odd sizes,
channel counts off the block size, batch 1, NCHW and channels-last.
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from refbench import kernels
from refbench.kernels.conv import Conv2d, conv2d_input_grad, conv2d_weight_grad, swap_conv2d
from refbench.models.lenet import LeNet5

# torch's own padding='same' with an even kernel warns that it copies the input.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}  # relative to max |reference|

CASES = {  # N, C, H, W, K, kernel, stride, padding, dilation, bias, relu
    "lenet-conv1-batch1": (1, 1, 9, 9, 6, 5, 1, 2, 1, True, True),
    "stride2-odd": (2, 3, 11, 10, 17, 3, 2, 1, 1, False, True),
    "dilated": (2, 6, 8, 7, 16, 3, 1, 2, 2, True, False),
    "pointwise-odd-channels": (3, 70, 7, 9, 33, 1, 1, 0, 1, True, True),  # 2 x 2 tiles, 2 channel blocks
    "asymmetric": (1, 5, 10, 8, 7, (3, 2), (2, 1), (1, 0), (1, 2), True, False),
    "channels-over-block": (2, 40, 6, 6, 24, 3, 1, "same", 1, False, False),
    "same-even-kernel": (1, 3, 7, 6, 4, 4, 1, "same", 1, True, True),
}


def _close(got, ref, dtype, what):
    atol = TOL[dtype] * max(ref.abs().max().item(), 1.0)
    torch.testing.assert_close(got.double(), ref, atol=atol, rtol=0, msg=lambda m: f"{what}: {m}")


def _inputs(case, dtype, channels_last, bias):
    N, C, H, W, K, k, *_ = case
    kh, kw = (k, k) if isinstance(k, int) else k
    x = torch.randn(N, C, H, W, device=DEVICE).to(dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    w = torch.randn(K, C, kh, kw, device=DEVICE).to(dtype)
    b = torch.randn(K, device=DEVICE).to(dtype) if bias else None
    return x, w, b


def _check_against_fp64(x, w, b, stride, padding, dilation, relu):
    """Run ours and fp64 F.conv2d on the same values; compare output and all gradients."""
    leaves = [t.detach().requires_grad_() for t in (x, w, b) if t is not None]
    refs = [t.detach().double().requires_grad_() for t in leaves]
    y = kernels.conv2d(*leaves[:2], leaves[2] if b is not None else None, stride, padding, dilation,
                       activation="relu" if relu else None)
    ref = F.conv2d(*refs[:2], refs[2] if b is not None else None, stride, padding, dilation)
    ref = ref.relu() if relu else ref
    dy = torch.randn(y.shape, device=y.device).to(y.dtype)
    y.backward(dy)
    ref.backward(dy.double())
    _close(y, ref, x.dtype, "output")
    for name, got, want in zip(("grad input", "grad weight", "grad bias"), leaves, refs):
        _close(got.grad, want.grad, x.dtype, name)
    return y


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels-last"])
@pytest.mark.parametrize("name", list(CASES))
def test_fp32_matches_fp64(name, channels_last):
    case = CASES[name]
    x, w, b = _inputs(case, torch.float32, channels_last, bias=case[9])
    y = _check_against_fp64(x, w, b, *case[6:9], relu=case[10])
    if case[1] > 1:  # one channel is both NCHW and channels-last
        assert y.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("relu", [False, True], ids=["plain", "relu"])
@pytest.mark.parametrize("name", ["stride2-odd", "channels-over-block"])
def test_16bit_matches_fp64(name, relu, dtype):
    case = CASES[name]
    x, w, b = _inputs(case, dtype, channels_last=relu, bias=True)
    _check_against_fp64(x, w, b, *case[6:9], relu=relu)


def test_bfloat16_lenet_sized_case_is_right():
    """The flat reduction in bfloat16 (once off by about 1e10 in the interpreter)."""
    x = torch.randn(2, 3, 13, 13, device=DEVICE).bfloat16()
    w = (0.3 * torch.randn(4, 3, 5, 5, device=DEVICE)).bfloat16()
    b = torch.randn(4, device=DEVICE).bfloat16()
    want = F.conv2d(x.double(), w.double(), b.double(), padding=2)
    _close(kernels.conv2d(x, w, b, padding=2), want, torch.bfloat16, "output")


def test_weight_copy_follows_in_place_updates():
    """The channels-last copy of a weight is remade when the weight changes in place."""
    x = torch.randn(1, 32, 5, 5, device=DEVICE)
    w = torch.randn(16, 32, 3, 3, device=DEVICE)
    first = kernels.conv2d(x, w, padding=1)
    _close(first, F.conv2d(x.double(), w.double(), padding=1), torch.float32, "first call")
    with torch.no_grad():
        w.mul_(-2)
    _close(kernels.conv2d(x, w, padding=1), F.conv2d(x.double(), w.double(), padding=1), torch.float32,
           "after w.mul_(-2)")


def test_bias_grad_and_relu_mask_with_all_negative_output():
    """A ReLU that zeroes every output passes no gradient at all."""
    x = torch.rand(1, 2, 5, 5, device=DEVICE, requires_grad=True)
    w = (-torch.rand(3, 2, 3, 3, device=DEVICE)).requires_grad_()
    b = torch.zeros(3, device=DEVICE, requires_grad=True)
    kernels.conv2d(x, w, b, activation="relu").sum().backward()
    for t in (x, w, b):
        assert torch.count_nonzero(t.grad) == 0


def test_gradient_functions_match_torch_nn_grad():
    x = torch.randn(2, 3, 12, 11, device=DEVICE)
    w = torch.randn(4, 3, 3, 3, device=DEVICE)
    dy = torch.randn(2, 4, 6, 6, device=DEVICE)
    geometry = dict(stride=2, padding=1, dilation=1)
    want = torch.nn.grad.conv2d_input(x.shape, w.double(), dy.double(), **geometry)
    _close(conv2d_input_grad(dy, w, x.shape, **geometry), want, torch.float32, "grad input")
    want = torch.nn.grad.conv2d_weight(x.double(), w.shape, dy.double(), **geometry)
    for split_k in (1, 3):  # split-K partial sums add up to the same gradient
        got = conv2d_weight_grad(dy, x, w.shape, **geometry, split_k=split_k)
        _close(got, want, torch.float32, f"grad weight, split {split_k}")


def test_unbatched_input():
    x, w, b = _inputs(CASES["stride2-odd"], torch.float32, False, True)
    y = kernels.conv2d(x[0], w, b, stride=2, padding=1)
    _close(y, F.conv2d(x[0].double(), w.double(), b.double(), stride=2, padding=1), torch.float32, "unbatched")


@pytest.mark.parametrize("call, error, words", [
    (lambda x, w: kernels.conv2d(x, w, groups=2), NotImplementedError, "groups=2"),
    (lambda x, w: kernels.conv2d(x, w, activation="gelu"), NotImplementedError, "activation='gelu'"),
    (lambda x, w: kernels.conv2d(x.double(), w.double()), NotImplementedError, "float64"),
    (lambda x, w: kernels.conv2d(x, w.half()), NotImplementedError, "float16"),
    (lambda x, w: kernels.conv2d(x[None], w), ValueError, "expected input (N, C, H, W)"),
    (lambda x, w: kernels.conv2d(x[:, :2], w), ValueError, "weight expects 4"),
    (lambda x, w: kernels.conv2d(x, w, torch.zeros(3)), ValueError, "bias shape"),
    (lambda x, w: kernels.conv2d(x, w, padding=-1), ValueError, "ints >= 0"),
    (lambda x, w: kernels.conv2d(x, w, stride=0), ValueError, "must be positive"),
    (lambda x, w: kernels.conv2d(x, w, stride=2, padding="same"), ValueError, "stride 1"),
    (lambda x, w: kernels.conv2d(x[..., :2, :2], w), ValueError, "smaller than the dilated kernel"),
    (lambda x, w: Conv2d(4, 5, 3, padding_mode="reflect"), NotImplementedError, "padding_mode='reflect'"),
    (lambda x, w: Conv2d(4, 6, 3, groups=2), NotImplementedError, "groups=2"),
])
def test_unsupported_arguments_say_what_is_supported(call, error, words):
    x, w = torch.randn(1, 4, 6, 6, device=DEVICE), torch.randn(5, 4, 3, 3, device=DEVICE)
    with pytest.raises(error, match="kernels.conv2d") as info:
        call(x, w)
    assert words in str(info.value)


def test_conv2d_module_is_a_drop_in():
    torch_conv = nn.Conv2d(3, 5, 3, stride=2, padding=1).to(DEVICE)
    ours = Conv2d(3, 5, 3, stride=2, padding=1).to(DEVICE)
    assert ours.state_dict().keys() == torch_conv.state_dict().keys()
    ours.load_state_dict(torch_conv.state_dict())
    x = torch.randn(2, 3, 9, 9, device=DEVICE)
    want = F.conv2d(x.double(), torch_conv.weight.double(), torch_conv.bias.double(), 2, 1)
    _close(ours(x), want, torch.float32, "module")


def test_from_conv_shares_parameters():
    conv = nn.Conv2d(2, 4, 3, padding=1, bias=False).to(DEVICE)
    ours = Conv2d.from_conv(conv.eval(), activation="relu")
    assert ours.weight is conv.weight and ours.bias is None and not ours.training
    assert "activation='relu'" in repr(ours)
    ours(torch.randn(1, 2, 5, 5, device=DEVICE)).sum().backward()
    assert conv.weight.grad is not None


def _outputs_and_grads(model, x):
    model.zero_grad()
    out = model(x)
    out.square().sum().backward()
    return out.detach().double(), [p.grad.double() for p in model.parameters()]


@pytest.mark.parametrize("activation, fused", [("relu", 2), ("tanh", 0)])
def test_patch_lenet5(activation, fused):
    model = LeNet5(activation=activation).to(DEVICE)
    x = torch.randn(2, 1, 28, 28, device=DEVICE)
    want, want_grads = _outputs_and_grads(model, x)
    actions = kernels.patch_model(model, ops=("conv2d",))
    assert len(actions) == 2 and sum("ReLU fused" in line for line in actions) == fused
    assert actions[0].startswith("features.0: Conv2d(1, 6, kernel_size=(5, 5)")
    assert sum(isinstance(m, Conv2d) for m in model.modules()) == 2
    got, got_grads = _outputs_and_grads(model, x)
    _close(got, want, torch.float32, "logits")
    for g, w in zip(got_grads, want_grads):
        _close(g, w, torch.float32, "parameter grad")


def test_swap_sequential_cnn_reports_skips():
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1, padding_mode="reflect"), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 12, 3), nn.Flatten(),
    ).to(DEVICE)
    x = torch.randn(2, 1, 12, 12, device=DEVICE)
    want, _ = _outputs_and_grads(model, x)
    actions = swap_conv2d(model)
    assert actions[0] == ("0: Conv2d(1, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)) "
                          "-> kernels.Conv2d with ReLU fused (1 -> Identity)")
    assert "3: kept" in actions[1] and "groups=2 is not supported" in actions[1]
    assert "5: kept" in actions[2] and "padding_mode='reflect' is not supported" in actions[2]
    assert actions[3].startswith("8: Conv2d(16, 12") and "fused" not in actions[3]
    assert isinstance(model[1], nn.Identity) and type(model[3]) is nn.Conv2d
    got, _ = _outputs_and_grads(model, x)
    _close(got, want, torch.float32, "outputs")
    assert swap_conv2d(model) == actions[1:3], "a second swap only re-reports what it cannot swap"


def test_swap_leaves_conv2d_subclasses_alone():
    model = nn.Sequential(nn.utils.parametrizations.weight_norm(nn.Conv2d(1, 2, 3)), nn.ReLU())
    assert swap_conv2d(model) == ["0: kept ParametrizedConv2d(1, 2, kernel_size=(3, 3), stride=(1, 1)) "
                                  "(a subclass of nn.Conv2d: its forward may differ)"]
    assert isinstance(model[1], nn.ReLU)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels-last"])
def test_gpu_layers(dtype, channels_last):
    """Real layer sizes (VGG conv1, a ResNet 3x3 and a stride-2 layer) on the autotuned kernels."""
    layers = [(8, 3, 32, 32, 64, 3, 1, 1, 1), (8, 128, 16, 16, 128, 3, 1, 1, 1), (8, 64, 16, 16, 128, 3, 2, 1, 1)]
    for case in layers:
        x, w, b = _inputs(case, dtype, channels_last, bias=True)
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            _check_against_fp64(x, w, b, *case[6:9], relu=True)


@pytest.mark.gpu
def test_gpu_tf32_and_autocast():
    x, w, b = _inputs((4, 64, 16, 16, 64, 3, 1, 1, 1), torch.float32, False, True)
    ref = F.conv2d(x.double(), w.double(), b.double(), padding=1)
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=True):
        y = kernels.conv2d(x, w, b, padding=1)
    torch.testing.assert_close(y.double(), ref, atol=2e-3 * ref.abs().max().item(), rtol=0)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        assert kernels.conv2d(x, w, b, padding=1).dtype == torch.bfloat16
