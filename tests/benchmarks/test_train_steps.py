"""One training step of mlp and lenet5 (refbench.harness.step.prepare: the step the matrix times)."""
import math

import pytest

from refbench.harness.step import prepare
from tests.benchmarks.conftest import sync


@pytest.mark.parametrize("workload", ["mlp", "lenet5"])
def test_train_step(benchmark, device, workload):
    batch = 64 if device == "cuda" else 16
    step = prepare(workload, device, "train", batch, keep_reference_state=False)
    benchmark.extra_info.update(device=device, batch_size=batch)

    def run():
        loss = step()
        sync(device)
        return loss

    loss = benchmark(run)
    value = loss[0] if isinstance(loss, (tuple, list)) else loss
    assert math.isfinite(float(value))
