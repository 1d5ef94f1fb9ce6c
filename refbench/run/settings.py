"""The settings every cell of a run shares, and the parsers of the command line's values.

Each ``Settings`` field carries its own command-line flag, help and parser
in its metadata, so a new setting is one field here and the code that uses
it; ``Settings.add_arguments`` and ``Settings.from_args`` do the rest. This
module imports nothing heavy: the CLI builds its parser from it before
torch is imported.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from refbench.errors import RefbenchError

MIN_WARMUP_S = 1.0   # a fresh process's first second of steps runs slower than its level (refbench validate)


def positive_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 1, "a positive integer")


def non_negative_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 0, "a non-negative integer")


def non_negative_float(text: str) -> float:
    return _number(text, float, lambda v: v >= 0 and v != float("inf"), "a non-negative number")


def positive_float(text: str) -> float:
    return _number(text, float, lambda v: 0 < v < math.inf, "a positive number")


def _number(text, kind, ok, what):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        value = None
    if value is None or not ok(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def threads_option(text: str) -> int | str:
    """``--threads N`` or ``--threads all`` (every physical core)."""
    return text if text == "all" else positive_int(text)


def _option(default, help: str, parse=None, flag: str | None = None):
    return field(default=default, metadata={"help": help, "parse": parse, "flag": flag})


@dataclass(frozen=True)
class Settings:
    """What every cell of a run shares. ``metadata`` gives each field's CLI flag, help and parser."""

    iters: int = _option(20, "timed iterations per cell", positive_int)
    max_warmup: int = _option(50, "most warm-up steps before timing", non_negative_int)
    max_warmup_s: float = _option(30.0, "most warm-up seconds before timing", positive_float)
    min_warmup_s: float = _option(MIN_WARMUP_S, "least warm-up seconds before timing, however steady the first "
                                                "steps look (a fresh process is not yet at its level)",
                                  non_negative_float)
    timeout_s: float = _option(600.0, "seconds a cell may take before it is killed", positive_float, "--timeout")
    check: bool = _option(True, "skip checking each cell's first step (outputs and gradients) against a float64 "
                                "reference; the cell is then only checked for NaN/Inf (by default it is checked)",
                          flag="--no-check")
    energy_s: float = _option(1.0, "seconds of steps for the NVML energy figure (GPU)", positive_float)
    threads: int | str | None = _option(
        1, "torch CPU threads per cell: N, or all (the physical cores); default 1, because a busy "
           "machine makes several threads fight (steps can be 100x slower)", threads_option)
    fresh_compile_cache: bool = _option(False, "give each cell an empty Inductor/Triton cache, so compile_s is "
                                               "a cold compile")
    imports: tuple[str, ...] = _option((), "import MODULE first (it may register more workloads); repeatable",
                                       flag="--import")

    def validate(self) -> None:
        """The checks the CLI's parsers make, for settings built in Python."""
        for f in dataclasses.fields(self):
            parse, value = f.metadata.get("parse"), getattr(self, f.name)
            if parse is not None and value is not None:
                try:
                    parse(str(value))
                except argparse.ArgumentTypeError as exc:
                    raise RefbenchError(f"{_flag(f)}: {exc}") from None
        for module in self.imports:
            if not module.strip():
                raise RefbenchError("--import needs a module name, e.g. --import mypackage.workloads")
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise RefbenchError(f"cannot import {module!r}: {exc}") from None
            except Exception as exc:   # the module itself is broken: a syntax error, or it raised
                raise RefbenchError(f"--import {module}: importing it raised {type(exc).__name__}: "
                                    f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}; "
                                    f"fix the module") from None

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "imports": list(self.imports)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Settings":
        return cls(**{**data, "imports": tuple(data.get("imports", ()))})

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """One option per field (``--no-check`` for a field that defaults to True)."""
        for f in dataclasses.fields(cls):
            flag, meta = _flag(f), f.metadata
            if f.type in ("bool", bool):
                parser.add_argument(flag, dest=f.name, action="store_false" if f.default else "store_true",
                                    help=meta["help"])
            elif f.name == "imports":
                parser.add_argument(flag, dest=f.name, action="append", default=[], metavar="MODULE",
                                    help=meta["help"])
            else:
                parser.add_argument(flag, dest=f.name, type=meta["parse"], default=f.default, help=meta["help"])

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Settings":
        return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def _flag(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def variant_option(text: str) -> dict[str, dict[str, Any]]:
    """``--variant lenet5:activation=tanh`` -> {"lenet5": {"activation": "tanh"}}; values parsed as JSON when they can be."""
    try:
        workload, assignments = text.split(":", 1)
        variant = {}
        for item in assignments.split(","):
            key, value = item.split("=", 1)
            try:
                variant[key.strip()] = json.loads(value)
            except json.JSONDecodeError:
                variant[key.strip()] = value.strip()
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WORKLOAD:OPTION=VALUE[,OPTION=VALUE], got {text!r}") from None
    return {workload.strip(): variant}
