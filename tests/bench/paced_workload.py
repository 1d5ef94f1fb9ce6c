"""A tiny workload whose step takes as long as a test says: each process that builds it takes the next
pace (milliseconds) from the file ``$REFBENCH_TEST_PACE_FILE``, one per line, and keeps the last one."""
import os
import time

from torch import nn

from reference_models import Recipe, Workload, register_model


def _next_pace_ms() -> float:
    path = os.environ.get("REFBENCH_TEST_PACE_FILE")
    if not path or not os.path.exists(path):
        return 1.0
    with open(path) as f:
        paces = [line.strip() for line in f if line.strip()]
    if len(paces) > 1:
        with open(path, "w") as f:
            f.write("\n".join(paces[1:]) + "\n")
    return float(paces[0])


class _Paced(nn.Module):
    def __init__(self, pace_ms: float):
        super().__init__()
        self.pace_s = pace_ms / 1e3
        self.linear = nn.Linear(8, 4)

    def forward(self, x):
        time.sleep(self.pace_s)
        return self.linear(x)


@register_model
class PacedWorkload(Workload):
    name = "test_paced"
    source = "refbench tests"
    input_shape = (8,)
    num_classes = 4
    recipes = {"fast": Recipe(optimizer="adam", lr=1e-3)}

    def build(self) -> nn.Module:
        return _Paced(_next_pace_ms())
