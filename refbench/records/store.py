"""Result files: JSON Lines, one whole record per line, appended and flushed as each record exists.

An interrupted run loses nothing; ``pandas.read_json(path, lines=True)``
reads a file directly.
"""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any, Iterable

from refbench.errors import RefbenchError


class ResultWriter:
    """Appends records to a JSONL file: one ``write`` per whole line, fsynced, so a line is there or it is not.

    Opening cuts off a partial last line that an interrupted run left
    (``repaired_bytes`` says how much), so the next record starts on a line
    of its own. A write that fails (a full disk) removes what it wrote of its
    line and raises one RefbenchError; every complete record stays.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.written = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self.repaired_bytes = self._cut_partial_line()
        except OSError as exc:
            raise RefbenchError(f"cannot write results to {self.path}: {exc.strerror}; "
                                "choose a writable file path with --out") from None

    def _cut_partial_line(self) -> int:
        """Truncate the file after its last newline; return the bytes removed."""
        size = os.fstat(self._fd).st_size
        if size == 0:
            return 0
        with open(self.path, "rb") as f:
            end = size
            while end > 0:
                f.seek(max(0, end - 65536))
                chunk = f.read(end - max(0, end - 65536))
                newline = chunk.rfind(b"\n")
                if newline >= 0:
                    keep = end - len(chunk) + newline + 1
                    break
                end -= len(chunk)
            else:
                keep = 0
        if keep < size:
            os.truncate(self.path, keep)
        return size - keep

    def append(self, record: dict[str, Any]) -> None:
        line = (dumps_record(record) + "\n").encode("utf-8")
        try:
            written = os.write(self._fd, line)
            if written != len(line):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            os.fsync(self._fd)
        except OSError as exc:
            try:
                self._cut_partial_line()
            except OSError:
                pass
            raise RefbenchError(
                f"cannot write results to {self.path}: {exc.strerror or exc}; the {self.written} records written "
                "before are complete and kept: free space (or choose another --out) and rerun with --resume") from None
        self.written += 1

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "ResultWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def dumps_record(record: dict[str, Any]) -> str:
    """One record as one line of JSON."""
    return json.dumps(record, sort_keys=True, default=_jsonable)


def read_results(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    """Read records from one or more JSONL files; a truncated last line is skipped."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    records = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a run killed mid-write leaves a partial line
    return records


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")
