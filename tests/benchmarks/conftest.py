"""The pytest-benchmark suite (``nox -s microbench``): on the GPU when there is one, else the CPU.

Each file's machine_info carries refbench's own environment (refbench.harness.machine),
its ``env_key`` included, so ``refbench compare`` and ``refbench nightly``
judge these files by the same machine rule as the matrix. In the ordinary
test run they are tests too (each checks its result), timed briefly.
"""
import importlib.util

import pytest
import torch

from refbench.harness.step import set_threads

THREADS = 1   # as the matrix's CPU cells: a busy machine makes several threads fight


def _update_machine_info(config, machine_info):
    from refbench.harness.machine import collect_env

    set_threads(THREADS)
    env = collect_env()
    machine_info.update({key: env.get(key) for key in ("env_key", "torch", "cuda", "gpu", "driver", "triton",
                                                       "threads")})


if importlib.util.find_spec("pytest_benchmark"):   # its hook is unknown to a pytest without the plugin
    pytest_benchmark_update_machine_info = _update_machine_info


@pytest.fixture(scope="session")
def device() -> str:
    set_threads(THREADS)
    return "cuda" if torch.cuda.is_available() else "cpu"


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()
