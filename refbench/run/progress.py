"""Progress of long work (``converge``, ``sweep``): a bar on a terminal, plain lines elsewhere.

On a terminal, tqdm draws a bar with the units done, the ETA and the latest
status; finished items are printed above it. When the stream is not a
terminal (CI logs, a pipe), each finished item is one plain line with its
count and ETA, and nothing is redrawn.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``total`` units of work (None: not known ahead); ``done(line)`` after each, ``note(text)`` for the item
    under way."""

    def __init__(self, total: float | None, *, unit: str = "run", stream: TextIO | None = None,
                 terminal: bool | None = None):
        self.stream = stream or sys.stderr
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self.total, self.unit, self.count = total, unit, 0.0
        self.started = time.perf_counter()
        self.bar = None
        if self.terminal:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=unit, file=self.stream, dynamic_ncols=True, leave=False)

    def note(self, text: str) -> None:
        """What is under way now (the bar's status; nothing in plain mode)."""
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=True)

    def done(self, line: str, units: float = 1) -> None:
        """``units`` more are done; ``line`` says what the last one gave."""
        self.count = self.count + units if self.total is None else min(self.total, self.count + units)
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
            self.bar.update(units)
            self.bar.set_postfix_str(line[:60], refresh=True)
            return
        print(f"[{self._count_text()}] {line}{self._eta()}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _count_text(self) -> str:
        if self.total is None:
            return f"{self.count:.0f}"
        if self.unit == "s":
            return f"{self.count:.0f}/{self.total:.0f} s"
        return f"{self.count:.0f}/{self.total:.0f}"

    def _eta(self) -> str:
        if self.total is None or not self.count or self.count >= self.total:
            return ""
        from tqdm import tqdm

        left = (time.perf_counter() - self.started) / self.count * (self.total - self.count)
        return f"  (ETA {tqdm.format_interval(left)})"
