"""Nothing outlives the command that started it, however the command ends (``kill -9`` included).

Three tools, for three kinds of helper:

- ``die_with(pid)``: a thread in a child process refbench starts itself (a
  cell, a rank, the static check's compiler) that kills the child, or the
  process group it leads, once ``pid`` (the command) is gone or a deadline
  has passed;
- ``run_group(command)``: ``subprocess.run`` in a process group of its own,
  killed whole when the caller is interrupted or times out;
- ``scratch_dir()`` (``new_scratch_dir``, ``remove_scratch_dir``): a
  temporary folder that a watcher process removes if this process dies
  before removing it itself. The watcher starts with the
  first scratch folder (or ``watch_children``); from then on every process
  this one starts carries a mark in its environment
  (``REFBENCH_LIFELINE_<pid>``), and the watcher kills every marked process
  left once this process is gone, whatever started it (git, a shell
  command, a measurement, a local Ray cluster, their children).

This module imports only the standard library: every layer may use it.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

POLL_S = 0.25
_MARK_PREFIX = "REFBENCH_LIFELINE_"


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def die_with(pid: int, *, deadline_s: float | None = None, group: bool = True) -> threading.Thread:
    """Kill this process (``group``: its whole process group, which it must lead) with SIGKILL once process
    ``pid`` is gone or ``deadline_s`` seconds have passed; returns the daemon thread that watches."""
    def watch() -> None:
        started = time.monotonic()
        while alive(pid) and (deadline_s is None or time.monotonic() - started < deadline_s):
            time.sleep(POLL_S)
        if group:
            os.killpg(0, signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)

    thread = threading.Thread(target=watch, name="refbench-lifeline", daemon=True)
    thread.start()
    return thread


def run_group(command: list[str], *, input: str | bytes | None = None, timeout: float | None = None,
              capture_output: bool = False, **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run`` with the child leading a process group of its own, which is killed whole (the
    child's children too) when the wait is interrupted or times out."""
    if input is not None:
        kwargs["stdin"] = subprocess.PIPE
    if capture_output:
        kwargs.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with subprocess.Popen(command, start_new_session=True, **kwargs) as process:
        try:
            out, err = process.communicate(input, timeout=timeout)
        except BaseException:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
    return subprocess.CompletedProcess(command, process.returncode, out, err)


# The watcher: reads "remove PATH" lines until its pipe closes; "done" first means this process ended
# normally (and cleaned up itself). Otherwise it kills every process carrying MARK, then removes the paths.
_WATCHER = r"""
import os, shutil, signal, sys, time
mark = ("\0" + sys.argv[1] + "=").encode()
paths, done = set(), False
for line in sys.stdin.buffer:
    kind, _, value = line.rstrip(b"\n").partition(b" ")
    if kind == b"remove":
        paths.add(os.fsdecode(value))
    elif kind == b"forget":
        paths.discard(os.fsdecode(value))
    elif kind == b"done":
        done = True
if done:
    sys.exit(0)
def marked():
    found = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if mark in b"\0" + f.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    left = marked()
    if not left:
        break
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    time.sleep(0.2)
for path in paths:
    shutil.rmtree(path, ignore_errors=True)
"""


class _Watcher:
    """This process's watcher (module docstring): started once, told of each scratch folder, sent away at exit."""

    def __init__(self) -> None:
        self.owner = os.getpid()
        self.mark = f"{_MARK_PREFIX}{self.owner}"
        read, self._write = os.pipe()      # neither end is inherited by programs this process starts
        env = {k: v for k, v in os.environ.items() if not k.startswith(_MARK_PREFIX)}
        try:
            self.process = subprocess.Popen([sys.executable, "-c", _WATCHER, self.mark], stdin=read, env=env,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                            start_new_session=True, close_fds=True)
        finally:
            os.close(read)
        os.environ[self.mark] = "1"
        self._lock = threading.Lock()
        atexit.register(self.close)

    def send(self, kind: str, path: Path | None = None) -> None:
        line = kind.encode() + (b" " + os.fsencode(path) if path is not None else b"") + b"\n"
        with self._lock, contextlib.suppress(OSError):
            os.write(self._write, line)

    def close(self) -> None:
        """The normal end: nothing for the watcher to do (a forked child's exit is not this process's)."""
        if os.getpid() != self.owner or self._write < 0:
            return
        self.send("done")
        os.close(self._write)
        self._write = -1
        os.environ.pop(self.mark, None)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)


_watcher: _Watcher | None = None
_watcher_lock = threading.Lock()


def _the_watcher() -> _Watcher:
    global _watcher
    with _watcher_lock:
        if _watcher is None or _watcher.owner != os.getpid() or _watcher._write < 0:
            _watcher = _Watcher()
        return _watcher


def watch_children() -> None:
    """Start the watcher now: every process this one starts from here on, and every process those start, is
    killed should this one die without ending normally (a cluster of helper processes a library starts)."""
    _the_watcher()


def new_scratch_dir(prefix: str) -> Path:
    """A new temporary folder that the watcher removes if this process dies before ``remove_scratch_dir``."""
    watcher = _the_watcher()
    path = Path(tempfile.mkdtemp(prefix=prefix))
    watcher.send("remove", path)
    return path


def remove_on_death(path: str | os.PathLike) -> None:
    """Have the watcher remove ``path`` (a folder some library makes for this process) if this process dies."""
    _the_watcher().send("remove", Path(path))


def remove_scratch_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    _the_watcher().send("forget", path)


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """``new_scratch_dir`` for the length of a block."""
    path = new_scratch_dir(prefix)
    try:
        yield path
    finally:
        remove_scratch_dir(path)
