"""The lent GPU machine's software as data, and imports held to it.

``device-image.txt`` lists the Python packages of the machine's image;
``CARRY_PACKAGES`` are the wheels gpu-check carries there. Nothing else can
be imported on that machine, and a module that imports anything else at
its top fails there, however well it imports here.

``DeviceImageFinder`` makes this machine behave the same: put first on
``sys.meta_path``, it refuses a package outside the image and the carry
when the project's own code (refbench, tests, conftest) imports it,
raising ``ModuleNotFoundError`` that names the package, as the machine
would. What a third-party package imports for itself is left alone: its
needs are the image's business, and versions here may differ from there.
``python -m refbench.gpu_check.image`` runs that check in a fresh process
(``check_imports``): it imports the given modules, or collects
``pytest -m gpu``, with the finder in place.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = Path(__file__).with_name("device-image.txt")
# Wheels gpu-check carries to the machine (pure Python): Liger-Kernel, a softmax peer of the kernel sweep.
# quack-kernels cannot travel: its CuTe DSL libraries (nvidia-cutlass-dsl-libs-cu13) alone are 92 MB, over
# the 64 MiB a call carries; the sweep records its cells as skipped, saying so.
CARRY_PACKAGES = ("liger-kernel",)
# The project's own top-level names, whatever the environment's metadata says about them.
_OWN = ("refbench", "tests", "conftest")
# Frames an import passes through on its way from the code that asked for it.
_PASS_THROUGH = ("importlib", os.path.join("_pytest", "outcomes.py"))


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them: ``Liger_Kernel`` -> ``liger-kernel``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def manifest(path: Path = MANIFEST) -> dict[str, str | None]:
    """The image's packages, name -> version (None where the listing gave none); ``python`` is the interpreter."""
    packages = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            packages[normalize(name)] = version.strip() or None
    return packages


def device_packages() -> set[str]:
    """Every distribution importable on the machine: the image's and the carried ones."""
    return (set(manifest()) - {"python"}) | {normalize(name) for name in CARRY_PACKAGES}


class DeviceImageFinder(importlib.abc.MetaPathFinder):
    """Refuses, to the project's own code, any installed package that the machine lacks."""

    def __init__(self, allowed: set[str], root: Path = ROOT):
        self.allowed = {normalize(name) for name in allowed}
        self.root = str(root) + os.sep
        self.owners = importlib.metadata.packages_distributions()
        self.refused: dict[str, str] = {}   # top-level module -> its distribution

    def find_spec(self, fullname, path=None, target=None):
        top = fullname.partition(".")[0]
        if "." in fullname or top in sys.stdlib_module_names or top in _OWN:
            return None
        owners = self.owners.get(top)
        if not owners or any(normalize(owner) in self.allowed for owner in owners):
            return None
        if not self._asked_by_project():
            return None
        self.refused[top] = owners[0]
        raise ModuleNotFoundError(f"No module named {top!r}: {owners[0]} is not on the GPU machine's image "
                                  f"({MANIFEST.name}) nor in gpu-check's carry", name=top)

    def _asked_by_project(self) -> bool:
        """Whether the import was written in refbench, tests or conftest (not in a dependency)."""
        frame = sys._getframe(2)
        while frame is not None:
            filename = frame.f_code.co_filename
            if not (filename.startswith("<frozen") or filename == __file__
                    or any(part in filename for part in _PASS_THROUGH)):
                return filename.startswith(self.root) and os.sep + "site-packages" + os.sep not in filename
            frame = frame.f_back
        return False


def restrict_imports(allowed: set[str] | None = None) -> DeviceImageFinder:
    """Put a ``DeviceImageFinder`` first on ``sys.meta_path`` (the machine's packages by default)."""
    finder = DeviceImageFinder(device_packages() if allowed is None else allowed)
    sys.meta_path.insert(0, finder)
    return finder


def check_imports(modules: list[str], *, timeout_s: float = 600) -> list[str]:
    """Import ``modules`` in a fresh process held to the machine's packages; one line per failure,
    naming the module and the package it could not have."""
    done = _probe(["--modules", *modules], timeout_s)
    return [f"{item['module']}: {item['error']}" for item in done["failures"]]


def collect_gpu_tests(*, timeout_s: float = 600) -> tuple[list[str], list[str]]:
    """``pytest -m gpu --collect-only`` as the machine would run it: (test ids, collection errors)."""
    done = _probe(["--collect"], timeout_s)
    return done["tests"], done["errors"]


def _probe(args: list[str], timeout_s: float) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, "-m", "refbench.gpu_check.image", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout_s)
    lines = done.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"failures": [{"module": "(the import check itself)", "error": " / ".join(tail) or "no output"}],
                "tests": [], "errors": [" / ".join(tail) or "the collection printed nothing"]}


def _import_all(modules: list[str]) -> dict:
    finder = restrict_imports()
    failures = []
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - every failing module is reported, not only the first
            refused = [f"{top} ({owner})" for top, owner in finder.refused.items()]
            message = f"{type(exc).__name__}: {exc}"
            failures.append({"module": module, "error": message, "refused": refused})
    return {"failures": failures}


def _collect() -> dict:
    import io
    from contextlib import redirect_stdout

    import pytest

    restrict_imports()

    class Collected:
        tests: list[str] = []
        errors: list[str] = []

        def pytest_collection_finish(self, session):
            Collected.tests = [item.nodeid for item in session.items]

        def pytest_collectreport(self, report):
            if report.failed:
                text = str(report.longrepr).strip().splitlines()
                Collected.errors.append(f"{report.nodeid}: {next((l for l in reversed(text) if l.strip()), '')}")

    with redirect_stdout(io.StringIO()):
        pytest.main(["-m", "gpu", "--collect-only", "-q", "-p", "no:cacheprovider", str(ROOT / "tests")],
                    plugins=[Collected()])
    return {"tests": Collected.tests, "errors": Collected.errors}


if __name__ == "__main__":
    arguments = sys.argv[1:]
    result = _collect() if arguments[:1] == ["--collect"] else _import_all(arguments[1:])
    print(json.dumps(result))
