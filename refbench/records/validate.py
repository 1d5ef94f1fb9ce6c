"""Records checked where they are read: every field a reader uses has its JSON type, or the line is not used.

One check for every reader (report, compare, nightly, ``--resume`` and the
pytest-benchmark reader): ``problem(record)`` says why a record read back
cannot be used, in words (``None``: it can). The types are the schema's:
the fields of ``RECORD_FIELDS`` (of which ``REQUIRED`` must be there), in
``env`` the ``env_key`` (a string) and the fields of ``ENV_FIELDS`` (each a
string, a number or null), in ``variant`` the fields of ``VARIANT_FIELDS``
that the readers use for the record's mode, in ``metrics`` each metric's
kind in the metric table (``latency_ms.samples`` a list of numbers, ``samples_per_s`` a number,
...). A metric the table does not know is no reader's business and is not
checked. Readers skip such a line and name it (``file:line: why``).

A status the schema does not know is not a bad line but a record this
refbench cannot judge (written by a newer one, or edited): ``check_status``
raises ``UnknownStatus``, one line that names the file and line, so that no
verdict is given over a record whose outcome is unknown.

``lines(path)`` reads a JSON Lines file for every reader:
(``file:line``, the record or None, the problem or None) per non-blank line.
"""
from __future__ import annotations

import json
import os
import warnings
from typing import Any, Iterator

from refbench.errors import RefbenchError
from refbench.records import metrics as metric_table
from refbench.records.schema import ENV_FIELDS, MODES, RECORD_FIELDS, STATUSES, VARIANT_FIELDS

REQUIRED = ("workload", "backend", "mode", "status")
_TYPES = {field.name: field.types for field in RECORD_FIELDS}
_JSON_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", dict: "an object",
               list: "a list", type(None): "null"}


class UnknownStatus(RefbenchError):
    """A record whose status this refbench does not know: it cannot be judged, so nothing is."""


class SkippedLine(UserWarning):
    """A line of a result file that a reader could not use (``file:line: why, skipped``)."""


def problem(record: Any) -> str | None:
    """Why ``record`` cannot be used by the readers, in words; None when it can."""
    if not isinstance(record, dict):
        return "not a JSON object"
    missing = [name for name in REQUIRED if name not in record]
    if missing:
        return f"a record without {', '.join(missing)}"
    for name, types in _TYPES.items():
        if name in record and not _is(record[name], types):
            return f"{name} is {_json_name(record[name])}, expected {' or '.join(map(_JSON_NAMES.get, types))}"
    if record["mode"] not in MODES:
        return f"mode {record['mode']!r} is not one of {', '.join(MODES)}"
    variant = record.get("variant") or {}
    for field in VARIANT_FIELDS.get(record["mode"], ()):
        if field.name in variant and not _is(variant[field.name], field.types):
            return (f"variant.{field.name} is {_json_name(variant[field.name])} in a {record['mode']} record, expected "
                    f"{' or '.join(map(_JSON_NAMES.get, field.types))}")
    return _env_problem(record.get("env") or {}) or _metrics_problem(record.get("metrics") or {})


def check_status(record: dict, where: str) -> None:
    """``UnknownStatus`` unless ``record``'s status is one the schema knows."""
    if record["status"] not in STATUSES:
        raise UnknownStatus(f"{where}: status {record['status']!r} is not one this refbench knows "
                            f"({', '.join(STATUSES)}); report these records with the refbench that wrote them, "
                            f"or correct the line")


def lines(path: str | os.PathLike) -> Iterator[tuple[str, dict | None, str | None]]:
    """(``file:line``, record, problem) for each non-blank line of a JSON Lines file; the record is None when
    the line is not JSON, the problem None when the record can be used (its status is checked by the caller)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line.strip())
            except json.JSONDecodeError as exc:
                yield where, None, f"not JSON ({exc.msg}, column {exc.colno})"
                continue
            yield where, record, problem(record)


def warn_skipped(where: str, why: str) -> None:
    """Say that a reader left out a line (the command line prints it as one warning)."""
    warnings.warn(f"{where}: {why}, skipped", SkippedLine, stacklevel=2)


def _env_problem(env: dict) -> str | None:
    key = env.get("env_key")
    if key is not None and not isinstance(key, str):
        return f"env.env_key is {_json_name(key)}, expected a string"
    for name in ENV_FIELDS:
        if name in env and not _is(env[name], (str, int, float, type(None))):
            return f"env.{name} is {_json_name(env[name])}, expected a string, a number or null"
    return None


def _metrics_problem(metrics: dict, prefix: str = "") -> str | None:
    for name, value in metrics.items():
        metric = metric_table.get(prefix + name)
        if metric is None and isinstance(value, dict):     # a parent of metrics (latency_ms), or unknown
            found = _metrics_problem(value, f"{prefix}{name}.")
            if found:
                return found
        elif metric is not None and not _of_kind(value, metric.json_kind):
            return (f"metrics.{prefix}{name} is {_json_name(value)}, expected "
                    f"{metric_table.KINDS[metric.json_kind]} or null")
    return None


def _of_kind(value: Any, kind: str) -> bool:
    if value is None or kind == "any":
        return True
    if kind == "number":
        return _number(value)
    if kind == "numbers":
        return isinstance(value, list) and all(_number(v) for v in value)
    if kind == "flag":
        return isinstance(value, bool)
    if kind == "text":
        return isinstance(value, str)
    if kind == "points":
        return isinstance(value, list) and all(_point(p) for p in value)
    return isinstance(value, list)


def _point(point: Any) -> bool:
    """One evaluation of a curve: an object whose step, epoch, train_s and metrics' values are numbers."""
    if not isinstance(point, dict) or not isinstance(point.get("metrics", {}), dict):
        return False
    values = [point.get(k) for k in ("step", "epoch", "train_s")] + list(point.get("metrics", {}).values())
    return all(v is None or _number(v) for v in values)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is(value: Any, types: tuple[type, ...]) -> bool:
    """``isinstance`` with JSON's types: true and false are not integers."""
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types)


def _json_name(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    return _JSON_NAMES.get(type(value), type(value).__name__)
