"""Result records with raw step times drawn at a chosen median and spread, for compare and nightly tests."""
import numpy as np

from bench.results import make_record

CPU = {"env_key": "cpu1", "gpu": None, "driver": None, "cpu": "AMD EPYC", "threads": 1, "torch": "2.14.1",
       "git_commit": "abc123", "host": "vm"}


def samples(median_ms: float, cv: float, n: int = 20, seed: int = 0) -> list[float]:
    """``n`` step times around ``median_ms`` with coefficient of variation ``cv`` (normal noise, fixed seed)."""
    rng = np.random.default_rng(seed)
    draws = rng.normal(0.0, 1.0, n)
    draws = (draws - draws.mean()) / draws.std(ddof=1)
    return [float(median_ms * (1 + cv * d)) for d in draws]


def timed(workload="mlp", *, ms=10.0, cv=0.02, n=20, seed=0, env=CPU, backend="cpu", mode="train", batch_size=16,
          status="ok", peak_bytes=50 << 20, run_id="r1", step_times=None, **metrics):
    """An ok cell whose samples_per_s and latency come from its step times (``step_times`` or drawn ones)."""
    times = list(step_times) if step_times is not None else samples(ms, cv, n, seed)
    median = float(np.median(times))
    mean = float(np.mean(times))
    return make_record(run_id=run_id, env=env, workload=workload, backend=backend, mode=mode, batch_size=batch_size,
                       dataset="synthetic", status=status, metrics={
                           "samples_per_s": batch_size / (median / 1e3), "peak_rss_delta_bytes": peak_bytes,
                           "latency_ms": {"median": median, "mean": mean, "cv": float(np.std(times, ddof=1) / mean),
                                          "n": len(times), "samples": times},
                           **metrics})
