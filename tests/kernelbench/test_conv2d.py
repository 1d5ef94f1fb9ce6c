"""The conv2d kernel sweep end to end on the CPU (two tiny layers, Triton interpreter)."""
import sys

import pytest

from refbench.kernelbench.conv2d import conv_layers_of, run_sweep
from refbench.records.schema import FIELDS
from refbench.models.lenet import LeNet5

LENET_CONV1 = {"name": "lenet5.features.0", "in_channels": 1, "out_channels": 6, "kernel_size": 5,
               "stride": 1, "padding": 2, "dilation": 1, "groups": 1, "height": 28, "width": 28}


def _sweep(layers, **overrides):
    kwargs = dict(device="cpu", layers=layers, shapes="quick", run_id="test-run", env={"host": "test"})
    return run_sweep(**{**kwargs, **overrides})


def test_conv_layers_of_lenet5():
    model = LeNet5(activation="relu").train()
    layers = conv_layers_of(model, (1, 28, 28), "lenet5")
    assert model.training, "the model's mode is restored"
    assert layers == [
        LENET_CONV1,
        {**LENET_CONV1, "name": "lenet5.features.3", "in_channels": 6, "out_channels": 16, "padding": 0,
         "height": 14, "width": 14},
    ]


def test_quick_cpu_sweep_records():
    big = {**LENET_CONV1, "name": "big", "in_channels": 64, "out_channels": 64}
    small = {**LENET_CONV1, "name": "small", "out_channels": 2, "height": 8, "width": 8}
    layers = [big, LENET_CONV1, {**LENET_CONV1, "name": "lenet5.copy"}, small]
    seen = []
    records = _sweep(layers, directions=("fwd", "fwd_relu", "grad_input", "grad_weight"), on_record=seen.append)
    assert seen == records
    # The copy is measured once, under the first name; on the CPU only the two smallest run.
    assert {r["workload"] for r in records} == {"small", "lenet5.features.0"}
    lenet = [r for r in records if r["workload"] == "lenet5.features.0"]
    assert lenet[0]["variant"]["layer"]["same_as"] == ["lenet5.copy"]
    assert len(records) == 2 * 4 * 3  # layers x directions x backends
    for r in records:
        assert set(r) == set(FIELDS)
        assert r["mode"] == "kernel" and r["run_id"] == "test-run" and r["batch_size"] == 2
        assert r["variant"]["precision"] == "fp32"
        if r["backend"] == "compile-max-autotune":
            assert r["status"] == "skipped" and r["error"]
            continue
        assert r["status"] == "ok", r["error"]
        m = r["metrics"]
        # fp32 against fp64: the weight gradient sums 2*28*28 products into values near 40, so an absolute
        # error near 1e-4 is fp32's own (torch's CPU convolution reaches it at one thread)
        assert m["time_ms"] > 0 and m["tflops"] > 0 and m["max_abs_err"] < 1e-3
        assert 0 < m["roofline_ms"] and m["roofline_fraction"] == pytest.approx(m["roofline_ms"] / m["time_ms"])


def test_failing_cell_becomes_error_record(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("kernel exploded")

    # sys.modules: the package attribute kernels.conv2d is the function, not the module.
    monkeypatch.setattr(sys.modules["refbench.kernels.conv"], "conv2d_input_grad", broken)
    records = _sweep([{**LENET_CONV1, "height": 8, "width": 8}], directions=("grad_input",))
    by_backend = {r["backend"]: r for r in records}
    assert by_backend["triton"]["status"] == "error"
    assert "RuntimeError: kernel exploded" in by_backend["triton"]["error"]
    assert by_backend["cudnn"]["status"] == "ok"


def test_layer_the_sweep_cannot_build_becomes_error_records():
    records = _sweep([{**LENET_CONV1, "groups": 2}], directions=("fwd", "grad_weight"))
    assert len(records) == 2 * 3 and all(r["status"] == "error" for r in records)
    assert "groups=2" in records[0]["error"]


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="unknown precision"):
        _sweep([LENET_CONV1], precisions=("fp8",))


def test_planned_cells_are_the_sweeps_cells_and_only_runs_the_chosen_ones():
    from refbench.kernelbench.conv2d import planned_cells
    from refbench.kernelbench.runs import conv_layers
    from refbench.records.schema import cell_key

    small = {**LENET_CONV1, "name": "small", "out_channels": 2, "height": 8, "width": 8}
    planned = planned_cells(device="cpu", layers=[LENET_CONV1, small], shapes="quick")
    assert [cell_key(r) for r in _sweep([LENET_CONV1, small])] == [cell_key(c) for c in planned]
    chosen = [planned[0], planned[4]]
    assert [cell_key(r) for r in _sweep([LENET_CONV1, small], only={cell_key(c) for c in chosen})] == \
        [cell_key(c) for c in chosen]
    # The GPU check's cells, listed without a GPU: 20 distinct layers, tf32 and bf16, 3 directions, 3 backends,
    # the max-autotune builds last.
    gpu = planned_cells(device="cuda", layers=conv_layers(), shapes="gpu-check")
    assert len(gpu) == 360 and gpu[-1]["backend"] == "compile-max-autotune"
