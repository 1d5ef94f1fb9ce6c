"""What gpu-check hands back: its folder packed into the device call's returned folder, whole at any moment.

The device tool returns at most 8 files of 16 MiB from ``$OUT``, no deeper
than two folders, whenever the call ends, a kill at its time limit included.
``pack`` writes two: ``gpu-check.tar.gz`` (the whole folder, as paths from
the repository's root, so ``tar xzf`` in a checkout puts it back for a
report or a resumed run) and ``summary.txt`` (the plan and each step's
outcome, to read at once). Each is written three folders down, where the
tool returns nothing, and renamed into place: a kill mid-write leaves the
previous version, never a partial one. Records being appended are cut at
their last whole line; a log keeps its last ``LOG_TAIL_BYTES``.
"""
from __future__ import annotations

import io
import os
import shutil
import tarfile
import threading
import time
from pathlib import Path

ARCHIVE = "gpu-check.tar.gz"
SUMMARY = "summary.txt"
LOG_TAIL_BYTES = 1 << 20
MAX_FILE_BYTES = 16 * 2**20
# Deeper than the two folders the device tool returns: partial files there never come back.
_INCOMING = Path(".incoming", "not", "returned")


def _contents(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".jsonl":
        return data[: data.rfind(b"\n") + 1]
    if path.suffix == ".log" and len(data) > LOG_TAIL_BYTES:
        return b"[... earlier output cut ...]\n" + data[-LOG_TAIL_BYTES:]
    return data


def archive_bytes(folder: Path, root: Path) -> bytes:
    """The folder as a gzipped tar, member names relative to ``root`` (to the folder's parent for a folder
    outside it); hidden and partial files left out."""
    base = root if folder.resolve().is_relative_to(root.resolve()) else folder.resolve().parent
    folder = folder.resolve()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or any(part.startswith(".") for part in path.relative_to(folder).parts):
                continue
            data = _contents(path)
            member = tarfile.TarInfo(str(path.relative_to(base)))
            member.size, member.mtime = len(data), int(path.stat().st_mtime)
            tar.addfile(member, io.BytesIO(data))
    return buffer.getvalue()


def place(out: Path, name: str, data: bytes) -> Path:
    """Write ``out/name`` whole: beside it, out of the tool's reach, then renamed into place."""
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"{name} is {len(data) / 2**20:.1f} MiB, over the 16 MiB the device tool returns")
    incoming = out / _INCOMING
    incoming.mkdir(parents=True, exist_ok=True)
    partial = incoming / name
    partial.write_bytes(data)
    os.replace(partial, out / name)
    return out / name


def pack(folder: Path, out: Path, root: Path, summary: str) -> list[Path]:
    return [place(out, ARCHIVE, archive_bytes(folder, root)), place(out, SUMMARY, summary.encode())]


def tidy(out: Path) -> None:
    """Remove the staging folder once nothing more will be packed."""
    shutil.rmtree(out / _INCOMING.parts[0], ignore_errors=True)


class Packer:
    """Packs after each step and every ``every_s`` seconds between, from a background thread."""

    def __init__(self, folder: Path, out: Path | None, root: Path, summary, every_s: float = 10.0):
        self.folder, self.out, self.root, self.summary, self.every_s = folder, out, root, summary, every_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "Packer":
        self.pack()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.pack()
        if self.out is not None:
            tidy(self.out)

    def pack(self) -> None:
        if self.out is None:
            return
        with self._lock:
            pack(self.folder, self.out, self.root, self.summary())

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            started = time.perf_counter()
            self.pack()
            if time.perf_counter() - started > self.every_s / 2:   # a large folder: pack less often
                self.every_s *= 2
