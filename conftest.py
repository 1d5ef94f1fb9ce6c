"""Test-wide set-up: Triton's interpreter on CPU, markers, seeds, data policy.

``REFBENCH_REQUIRE_DATA=1`` (set by CI) turns a missing data set from a skip
into a failure, so CI proves the real-data tests ran.
"""
import os

import pytest
import torch

from refbench.harness.triton_mode import choose_triton_mode

choose_triton_mode()  # the interpreter without a GPU, before anything imports triton


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def real_data():
    """Return a loader ``(workload_or_dataset_loader) -> data`` that skips, or fails in CI, when data is missing."""
    from refbench.errors import RefbenchError

    def load(loader, *args, **kwargs):
        try:
            return loader(*args, **kwargs)
        except RefbenchError as exc:
            if os.environ.get("REFBENCH_REQUIRE_DATA"):
                pytest.fail(f"required data missing: {exc}")
            pytest.skip(str(exc))

    return load
