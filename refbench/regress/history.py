"""The nightly history: plain files, one per night and machine, that can be committed (as asv's results).

``DIR/<env_key>/<UTC date>-<commit>.jsonl`` holds every record a night
measured on that machine (reruns included); a second night on the same day
and commit is ``<date>-<commit>-2.jsonl``, and so on: nothing is ever
overwritten. A night is written to a temporary file in the same folder,
flushed to disk, and moved into place (a hard link and an unlink: a rename
that never replaces an existing night), so a reader never sees half a
night and a crash leaves no partial file. Files whose names start with a
dot (a night being measured) are not nights.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from refbench.records import benchmark_json
from refbench.records.validate import UnknownStatus
from refbench.records.store import dumps_record
from refbench.errors import RefbenchError
from refbench.lifeline import alive

_NAME = re.compile(r"^(?P<date>\d{4}-\d{2}-\d{2})-(?P<commit>[^.]+?)(?:-(?P<repeat>\d+))?\.jsonl$")


@dataclass
class Night:
    path: Path
    env_key: str
    date: str
    commit: str
    frame: pd.DataFrame      # refbench.records.analysis's frame of the night's records
    repeat: int = 1          # the n-th night of the same day and commit

    @property
    def time(self) -> pd.Timestamp:
        """When the night was measured: its last record's time (nights of one day sort by it)."""
        times = self.frame["time"].dropna()
        return times.max() if len(times) else pd.Timestamp(self.date, tz="UTC")


def check_dir(history: str | os.PathLike) -> Path:
    """``history`` as a directory this process can write nights into, else a RefbenchError."""
    path = Path(history)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise RefbenchError(f"cannot write the history into {path} ({exc.strerror or exc}); "
                            f"choose a writable directory with --history") from None
    return path


def nights(history: str | os.PathLike) -> tuple[list[Night], list[str]]:
    """Every night under ``history``, oldest first per machine, and notes on what was skipped.

    A file that is not a night's name is ignored; a night with corrupt lines
    keeps its readable records (each skipped line noted); a night that has
    no record at all is noted and left out, never removed. A night holding
    another machine's records, or a status this refbench does not know, is
    a RefbenchError: it cannot be judged as one machine's night.
    """
    found, notes = [], []
    for folder in sorted(p for p in Path(history).iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(folder.glob("*.jsonl")):
            match = _NAME.match(path.name)
            if not match:
                continue
            try:
                loaded = benchmark_json.load([path])
            except UnknownStatus:
                raise
            except RefbenchError as exc:
                notes.append(f"{path}: {exc}; left out")
                continue
            machines = sorted(set(loaded.frame["env_key"]))
            if machines != [folder.name]:
                raise RefbenchError(f"{path} holds records of {', '.join(machines)}, but a night is one machine's, "
                                    f"the one its folder names ({folder.name}): move the other machines' records "
                                    f"into their own folders (or the file out of the history)")
            notes += loaded.skipped + [n for n in loaded.notes if "has no records" not in n]
            found.append(Night(path, folder.name, match["date"], match["commit"], loaded.frame,
                               int(match["repeat"] or 1)))
    found.sort(key=lambda n: (n.env_key, n.time, n.date, n.repeat))
    return found, notes


def store(history: str | os.PathLike, records: Sequence[dict], *, date: str | None = None) -> list[Path]:
    """Write ``records`` as tonight's files, one per machine (``env_key``); return their paths."""
    date = date or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
    groups: dict[str, list[dict]] = {}
    for record in records:
        groups.setdefault((record.get("env") or {}).get("env_key") or "unknown", []).append(record)
    written = []
    for env_key, group in groups.items():
        commit = _commit(group)
        folder = Path(history) / env_key
        written.append(_write_new(folder, date, commit, "".join(dumps_record(r) + "\n" for r in group)))
    return written


def holds_run(history: str | os.PathLike, run_id: str) -> bool:
    """Whether a stored night holds a record of the run ``run_id``."""
    needle = f'"run_id": {json.dumps(run_id)}'
    return any(needle in path.read_text(encoding="utf-8", errors="replace")
               for path in Path(history).glob("*/*.jsonl") if _NAME.match(path.name))


def remove_stale_partials(history: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of nights whose writers are gone (killed mid-store); return them."""
    removed = []
    for path in Path(history).glob("*/.*.partial"):
        pid = path.name.removesuffix(".partial").rsplit(".", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not alive(int(pid)):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _commit(records: Iterable[dict]) -> str:
    commits = [(r.get("env") or {}).get("git_commit") for r in records]
    commit = next((c for c in commits if c), "unknown")
    return re.sub(r"[^A-Za-z0-9_]+", "_", str(commit))[:40]


def _write_new(folder: Path, date: str, commit: str, text: str) -> Path:
    """Write ``text`` to the first free night name in ``folder``, through a temporary file renamed into place."""
    partial = folder / f".{date}-{commit}.{os.getpid()}.partial"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(partial, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        repeat = 1
        while True:
            target = folder / (f"{date}-{commit}.jsonl" if repeat == 1 else f"{date}-{commit}-{repeat}.jsonl")
            try:
                os.link(partial, target)    # fails when the name is taken: an earlier night is never replaced
                break
            except FileExistsError:
                repeat += 1
        partial.unlink()
        return target
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise RefbenchError(f"cannot write tonight's results into {folder} ({exc.strerror or exc}); "
                            f"free space and run again (the history's earlier nights are untouched)") from None
