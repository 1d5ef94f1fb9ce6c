"""Timing: raw samples kept, statistics right, short steps timed in blocks."""
import time

import pytest

from refbench.harness.timing import BLOCK_MS, Measurement, block_size, measure


def test_measurement_statistics_from_known_samples():
    m = Measurement([1.0, 2.0, 3.0, 4.0, 10.0])
    assert m.median == 3.0 and m.mean == 4.0 and m.quantile(0.5) == 3.0
    assert m.quantile(0.9) == pytest.approx(7.6) and m.summary()["samples"] == [1.0, 2.0, 3.0, 4.0, 10.0]
    assert Measurement([5.0]).cv == 0.0


@pytest.mark.parametrize("step_ms, block", [(0.1, 20), (0.5, 4), (BLOCK_MS, 1), (30.0, 1), (1e-6, 1000)])
def test_short_steps_are_timed_in_blocks_of_at_least_block_ms(step_ms, block):
    assert block_size(step_ms) == block


def test_a_sub_millisecond_step_is_measured_per_step_from_blocks():
    calls = []

    def step():
        calls.append(1)
        end = time.perf_counter() + 50e-6
        while time.perf_counter() < end:
            pass

    result = measure(step, "cpu", iters=5, max_warmup=10, max_warmup_s=5)
    m = result.measurement
    assert m.block > 1 and len(m.samples_ms) == 5
    assert len(calls) == result.warmup_steps + 5 * m.block
    assert 0.04 < m.median < 1.0   # per step, not per block


def test_processes_that_step_together_time_the_block_they_agree_on():
    calls, proposed = [], []

    def agree(block):
        proposed.append(block)
        return 7

    result = measure(lambda: calls.append(1), "cpu", iters=3, min_warmup=1, max_warmup=1, min_warmup_s=0,
                     agree_block=agree)
    assert proposed[0] > 1 and result.measurement.block == 7   # its own proposal was overruled
    assert len(calls) == 1 + 3 * 7
