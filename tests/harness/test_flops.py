"""FLOPs per step against hand counts (2 FLOPs per multiply-add), and the device peak table."""
import pytest

from refbench.harness.flops import peak_tflops, step_flops, throughput_metrics
from refbench.models import get_workload

# MLP 784-128-64-10: multiply-adds per sample in the forward pass.
MLP_MACS = 784 * 128 + 128 * 64 + 64 * 10
# LeNet-5: conv1 6@28x28 with 5x5x1 kernels, conv2 16@10x10 with 5x5x6, then 400-120-84-10.
LENET_CONV1 = 6 * 28 * 28 * 25
LENET_MACS = LENET_CONV1 + 16 * 10 * 10 * 150 + 400 * 120 + 120 * 84 + 84 * 10


@pytest.mark.parametrize("name, macs, first_layer_macs", [
    ("mlp", MLP_MACS, 784 * 128), ("lenet5", LENET_MACS, LENET_CONV1),
])
def test_flops_match_hand_counts(name, macs, first_layer_macs):
    workload = get_workload(name)
    variant = workload.resolve_variant()
    assert step_flops(workload, variant, 16, "infer") == (16 * 2 * macs, "meta")
    # Backward: gradients of inputs and of weights, each as costly as the forward,
    # except that the first layer's input needs no gradient.
    assert step_flops(workload, variant, 16, "train") == (16 * 2 * (3 * macs - first_layer_macs), "meta")


def test_every_timed_workload_has_its_flops_counted():
    """A double backward (WGAN-GP) and a step that reads lengths on the host (packed RNN sequences) included."""
    from refbench.models import list_models

    for name in list_models(exclude="test_*"):   # the tests' own workloads crash and hang on purpose
        workload = get_workload(name)
        if workload.untimed_reason:
            continue
        for mode in ("train", "infer"):
            flops, counted_on = step_flops(workload, workload.resolve_variant(), 2, mode)
            assert flops > 0 and counted_on in ("meta", "cpu"), (name, mode)
    assert step_flops(get_workload("attention_dot"), {}, 2, "infer")[1] == "cpu"


@pytest.mark.parametrize("device, precision, peak", [
    ("NVIDIA H100 80GB HBM3", "bf16", 989.4), ("NVIDIA H100 PCIe", "fp32", 51.2),
    ("NVIDIA H200", "tf32", 494.7), ("NVIDIA A100-SXM4-80GB", "fp32", 19.5),
    ("NVIDIA L4", "fp16", 121.0), ("NVIDIA L40S", "fp32", 91.6),
])
def test_peaks_by_device_name(device, precision, peak):
    assert peak_tflops(device, precision) == peak


def test_unknown_device_or_precision_leaves_mfu_empty():
    assert peak_tflops("Some Future GPU", "fp32") is None and peak_tflops(None, "fp32") is None
    assert peak_tflops("Tesla T4", "tf32") is None
    metrics = throughput_metrics(2_000_000_000, 0.001, "Some Future GPU", "fp32")
    assert metrics["tflops"] == pytest.approx(2.0) and metrics["mfu"] is None
    assert throughput_metrics(2e12, 1.0, "NVIDIA A100 80GB PCIe", "bf16")["mfu"] == pytest.approx(2 / 312)
