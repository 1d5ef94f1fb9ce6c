"""What ``refbench list`` shows about each registered workload."""
from __future__ import annotations

import torch

from reference_models import count_parameters, get_workload, list_models


def workload_rows(pattern: str | None = None) -> list[dict]:
    rows = []
    for name in list_models(pattern):
        workload = get_workload(name)
        with torch.device("meta"):  # shapes only: no memory, no initialisation cost
            parameters = count_parameters(workload.make())
        rows.append({
            "name": name, "task": workload.task, "dataset": workload.dataset, "parameters": parameters,
            "variants": ", ".join(f"{k}={'/'.join(map(str, v))}" for k, v in workload.variants.items()),
            "recipes": list(workload.recipes), "targets": {k: f"{t.metric} >= {t.threshold}" for k, t in workload.targets.items()},
            "source": workload.source,
        })
    return rows
