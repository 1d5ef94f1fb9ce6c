"""The workload registry: names to Workload classes, shell-style filtering."""
from __future__ import annotations

import difflib
import fnmatch
from typing import Iterable, TypeVar

from refbench.errors import RefbenchError

_REGISTRY: dict[str, type] = {}
W = TypeVar("W", bound=type)


def register_model(cls: W) -> W:
    """Class decorator: register a Workload subclass under its ``name``."""
    name = getattr(cls, "name", None)
    if not name:
        raise ValueError(f"{cls.__qualname__} has no name to register under")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"a workload named {name!r} is already registered ({_REGISTRY[name].__module__})")
    _REGISTRY[name] = cls
    return cls


def unregister_model(name: str) -> None:
    """Remove a registered workload (used by tests that register their own)."""
    _REGISTRY.pop(name, None)


def get_workload(name: str):
    """Return a new instance of the Workload registered as ``name``."""
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise RefbenchError(_unknown_message(name)) from None


def list_models(include: str | Iterable[str] | None = None,
                exclude: str | Iterable[str] | None = None) -> list[str]:
    """Sorted registered names matching any ``include`` pattern and no ``exclude`` pattern."""
    def patterns(p):
        return [p] if isinstance(p, str) else list(p or [])

    names = sorted(_REGISTRY)
    if include is not None:
        names = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns(include))]
    return [n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in patterns(exclude))]


def _unknown_message(name: str) -> str:
    close = difflib.get_close_matches(name, sorted(_REGISTRY), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"unknown workload {name!r}{hint} (`refbench list` shows all {len(_REGISTRY)})"
