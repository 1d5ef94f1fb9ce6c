"""Progress of long work on stderr: a tqdm bar on a terminal, one plain line per item elsewhere.

Each finished item (a matrix cell, a training run, a kernel case) updates
the bar with items done, elapsed time, ETA and the last item's status; when
stderr is not a terminal (CI logs, files) each item is one line instead, so
a log stays readable.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, *, unit: str = "cell", stream: TextIO | None = None):
        self.total, self.unit, self.done = total, unit, 0
        self.stream = stream or sys.stderr
        self.started = time.perf_counter()
        self._bar = None
        if total and self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit=unit, file=self.stream, dynamic_ncols=True, leave=True)

    def update(self, label: str, status: str) -> None:
        """One more item finished: ``label`` names it, ``status`` says how it ended (one line)."""
        self.done += 1
        if self._bar is not None:
            self._bar.set_postfix_str(f"{label}: {status}"[:60], refresh=False)
            self._bar.update(1)
            return
        elapsed = time.perf_counter() - self.started
        eta = elapsed / self.done * (self.total - self.done) if self.total else 0.0
        counter = f"[{self.done}/{self.total}]" if self.total else f"[{self.done}]"
        print(f"{counter} {label}: {status}  ({_duration(elapsed)} elapsed, ETA {_duration(eta)})",
              file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
