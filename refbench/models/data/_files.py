"""The data directory a user names, and the two ways a data set can fail them.

``DataMissing``: the data set is not where it was looked for; the message
names the places and how to get it. ``BadDataFile``: a file is there but
unusable (truncated, wrong magic number, wrong checksum, malformed line);
the message names the file and what fetches a good one. Both are
``RefbenchError``, so the CLI prints them as one line.
"""
from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

from refbench.errors import RefbenchError


SPLITS = ("train", "test")


def check_split(split: str) -> str:
    """``split`` if it is one every data set has, else the one-line error."""
    if split not in SPLITS:
        raise RefbenchError(f"unknown split {split!r}; use train or test")
    return split


class DataMissing(RefbenchError):
    """A data set is not in any place it was looked for."""


class BadDataFile(RefbenchError):
    """A data file exists but cannot be used as it is."""

    def __init__(self, path: Path | str, problem: str, remedy: str = "", *, line: int | None = None):
        self.path = Path(path)
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {problem}" + (f"; {remedy}" if remedy else ""))


def read_bytes(path: Path, remedy: str) -> bytes:
    """The content of ``path``, decompressed when its name ends in ``.gz``."""
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        return gzip.decompress(path.read_bytes())
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise BadDataFile(path, f"not a complete gzip file ({exc})", remedy) from None


def explicit_directory(data_dir: str | os.PathLike | None) -> tuple[Path, str] | None:
    """(the data directory the user named, how they named it): ``data_dir`` (``--data-dir``), else
    ``$REFBENCH_DATA``; None when neither is set. A named directory that does not exist is an error."""
    if data_dir is not None and not str(data_dir).strip():
        raise RefbenchError("--data-dir is empty; point it at the directory that holds the data sets")
    if data_dir:
        root, named = Path(data_dir), "--data-dir"
    elif os.environ.get("REFBENCH_DATA"):
        root, named = Path(os.environ["REFBENCH_DATA"]), "REFBENCH_DATA"
    else:
        return None
    if not root.is_dir():
        state = "is a file, not a directory" if root.exists() else "does not exist"
        raise RefbenchError(f"data directory {root} (given by {named}) {state}; "
                            f"point {named} at the directory that holds the data sets")
    return root, named
