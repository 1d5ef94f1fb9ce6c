"""The project's Triton softmax and conv2d kernels at a few shapes (tiny on CPU: Triton's interpreter runs them)."""
import pytest
import torch

from refbench.kernels.conv import conv2d
from refbench.kernels.softmax import softmax
from tests.benchmarks.conftest import sync

# (rows, columns): GPU shapes / interpreter shapes
SOFTMAX = {"cuda": [(4096, 1024), (1024, 8192), (256, 32768)], "cpu": [(4, 16), (8, 64)]}
# (batch, in channels, height, width, out channels, kernel)
CONV = {"cuda": [(128, 1, 28, 28, 6, 5), (128, 64, 32, 32, 64, 3)], "cpu": [(1, 1, 8, 8, 2, 3), (1, 2, 6, 6, 4, 3)]}


def _shapes(table, device):
    return table[device]


@pytest.mark.parametrize("index", range(3), ids=["small", "medium", "large"])
def test_softmax_forward(benchmark, device, index):
    shapes = _shapes(SOFTMAX, device)
    if index >= len(shapes):
        pytest.skip(f"{len(shapes)} softmax shapes on {device}")
    rows, cols = shapes[index]
    x = torch.randn(rows, cols, device=device)
    benchmark.extra_info.update(device=device, shape=[rows, cols])

    def run():
        y = softmax(x)
        sync(device)
        return y

    y = benchmark(run)
    torch.testing.assert_close(y, torch.softmax(x, dim=-1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("index", range(2), ids=["lenet-conv1", "resnet-block"])
def test_conv2d_forward(benchmark, device, index):
    n, c, h, w, k, r = _shapes(CONV, device)[index]
    x = torch.randn(n, c, h, w, device=device)
    weight, bias = torch.randn(k, c, r, r, device=device), torch.randn(k, device=device)
    benchmark.extra_info.update(device=device, shape=[n, c, h, w, k, r])

    def run():
        y = conv2d(x, weight, bias, padding=r // 2)
        sync(device)
        return y

    y = benchmark(run)
    torch.testing.assert_close(y, torch.nn.functional.conv2d(x, weight, bias, padding=r // 2), rtol=1e-4, atol=1e-4)
