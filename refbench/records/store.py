"""Result files: JSON Lines, one whole record per line, appended and flushed as each record exists.

An interrupted run loses nothing; ``pandas.read_json(path, lines=True)``
reads a file directly.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
from pathlib import Path
from typing import Any, BinaryIO, Iterable

from refbench.errors import RefbenchError
from refbench.records import validate


class ResultWriter:
    """Appends records to a JSONL file: one ``write`` per whole line, fsynced, so a line is there or it is not.

    Opening checks that the file is refbench's results (its first line a
    record, see ``is_record``) and refuses any other file with one
    RefbenchError; it never rewrites a line refbench did not write. A last
    line without its newline that is a whole record stays (the newline is
    added); a fragment that is not JSON, what an interrupted run left, is cut
    off (``repaired_bytes`` says how much), so the next record starts on a
    line of its own. A write that fails (a full disk) removes what it wrote
    of its line and raises one RefbenchError; every complete record stays.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.written = 0
        self._fd = -1
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self.repaired_bytes = self._end_on_a_whole_line()
        except OSError as exc:
            self.close()
            raise RefbenchError(f"cannot write results to {self.path}: {exc.strerror}; "
                                "choose a writable file path with --out") from None
        except RefbenchError:
            self.close()
            raise

    def _end_on_a_whole_line(self) -> int:
        """Refuse a file that is not results; end it on a whole line (module docstring); return the bytes cut."""
        size = os.fstat(self._fd).st_size
        if size == 0:
            return 0
        with open(self.path, "rb") as f:
            whole = _after_last_newline(f, size)
            f.seek(whole)
            tail = f.read()
            f.seek(0)
            first = next((line for line in iter(f.readline, b"") if line.strip() and f.tell() <= whole), None)
        if first is not None and not is_record(_json(first)):
            raise RefbenchError(f"{self.path} is not a refbench results file (its first line is not a record); "
                                f"refbench appends only to its own JSON Lines: choose another --out")
        if not tail.strip():
            return 0
        value = _json(tail)
        if is_record(value):
            os.write(self._fd, b"\n")    # a whole record that lost only its newline stays
            return 0
        if value is not _NOT_JSON or (first is None and not tail.startswith(_RECORD_START)):
            raise RefbenchError(f"{self.path} ends in a line without a newline that is not a record refbench wrote; "
                                f"refbench does not rewrite lines it did not write: choose another --out")
        os.ftruncate(self._fd, whole)
        return size - whole

    def append(self, record: dict[str, Any]) -> None:
        line = (dumps_record(record) + "\n").encode("utf-8")
        try:
            written = os.write(self._fd, line)
            if written != len(line):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            os.fsync(self._fd)
        except OSError as exc:
            try:
                os.ftruncate(self._fd, _after_last_newline(self.path, os.fstat(self._fd).st_size))
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


def is_record(value: Any) -> bool:
    """Whether a parsed line is a result record (an object with the fields every reader needs)."""
    return isinstance(value, dict) and all(name in value for name in validate.REQUIRED)


def read_results(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[dict]:
    """Read records from one or more JSONL files.

    A line that is not a record the readers can use (refbench.records.validate;
    a run killed mid-write leaves a partial last line) is left out with a
    ``SkippedLine`` warning naming it; a status this refbench does not know is
    ``UnknownStatus``.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    records = []
    for path in paths:
        for where, record, problem in validate.lines(path):
            if problem:
                validate.warn_skipped(where, problem)
                continue
            validate.check_status(record, where)
            records.append(record)
    return records


def _after_last_newline(file: BinaryIO | str | os.PathLike, size: int) -> int:
    """The offset just after the last newline of a file ``size`` bytes long (0 when it has none)."""
    with contextlib.ExitStack() as stack:
        f = file if hasattr(file, "seek") else stack.enter_context(open(file, "rb"))
        end = size
        while end > 0:
            start = max(0, end - 65536)
            f.seek(start)
            newline = f.read(end - start).rfind(b"\n")
            if newline >= 0:
                return start + newline + 1
            end = start
    return 0


_NOT_JSON = object()
_RECORD_START = b'{"backend": '   # how dumps_record begins every line (its keys are sorted)


def _json(line: bytes) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return _NOT_JSON


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")
