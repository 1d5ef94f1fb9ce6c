"""docs/records.md, written from the schema and the metric table: ``python -m refbench.records.doc > docs/records.md``.

A test holds the committed file to this output, so the document cannot fall behind the code.
"""
from __future__ import annotations

from refbench.records import metrics
from refbench.records.schema import ENV_FIELDS, MODES, RECORD_FIELDS, SCHEMA_VERSION, STATUSES


def _types(field) -> str:
    return " or ".join("null" if t is type(None) else {"str": "string", "int": "integer", "dict": "object"}.get(
        t.__name__, t.__name__) for t in field.types)


def markdown() -> str:
    lines = [
        "# Result records",
        "",
        "<!-- Written by `python -m refbench.records.doc > docs/records.md`; a test keeps it current. -->",
        "",
        f"refbench writes one JSON object per line (JSON Lines), schema {SCHEMA_VERSION}. "
        "`pandas.read_json(path, lines=True)` reads a file; `refbench.records.analysis.load` reads it as one "
        "DataFrame with the metrics flattened (`latency_ms.median`).",
        "",
        "## Fields",
        "",
        "| field | type | meaning |",
        "|---|---|---|",
        *(f"| `{f.name}` | {_types(f)} | {f.description} |" for f in RECORD_FIELDS),
        "",
        "## Statuses",
        "",
        "| status | meaning |",
        "|---|---|",
        *(f"| `{name}` | {meaning} |" for name, meaning in STATUSES.items()),
        "",
        f"Modes: {', '.join(f'`{m}`' for m in MODES)}.",
        "",
        "## env",
        "",
        "| field | meaning |",
        "|---|---|",
        *(f"| `{name}` | {meaning} |" for name, meaning in ENV_FIELDS.items()),
        "",
        "## Metrics",
        "",
        "Every metric a record may carry, by its flattened name; `name.*` is a group of free-form fields. "
        "*Judged* metrics get verdicts from `compare`, `nightly` and `bisect`; *better* says which way a change "
        "is good; *value* is what the readers accept (null always is: a figure that could not be had). A record "
        "whose field, `env` field or metric has another JSON type is left out by every reader, which names its "
        "line; a status not listed above is an error.",
    ]
    for family, meaning in metrics.FAMILIES.items():
        rows = [m for m in metrics.METRICS if m.family == family]
        if not rows:
            continue
        lines += ["", f"### {family}: {meaning}", "", "| metric | unit | value | better | judged | meaning |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| `{m.name}` | {m.unit or '-'} | {metrics.KINDS[m.json_kind]} | {m.better or '-'} | "
                  f"{'yes' if m.judged else '-'} | {m.description} |" for m in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
