"""The report as a document (sections of paragraphs, tables and figures) and its two renderings.

Markdown keeps the tables and names each figure; HTML is one self-contained
page: its style inline, figures as base64 PNG data URIs, nothing loaded from
anywhere, and no element wider than a laptop screen (a table too wide
scrolls inside its own box).
"""
from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field

import pandas as pd


@dataclass
class Table:
    frame: pd.DataFrame                 # display text; the columns are the header
    marks: pd.DataFrame | None = None   # a CSS class per cell: "good", "bad", "warn" or ""
    tips: pd.DataFrame | None = None    # a cell's full text, shown on hover (long errors)
    folded: str | None = None           # HTML folds the table away under this line


@dataclass
class Figure:
    png: bytes
    alt: str


@dataclass
class Section:
    title: str
    blocks: list[str | Table | Figure] = field(default_factory=list)
    level: int = 2

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


@dataclass
class Document:
    title: str
    header: list[str]       # lines under the title: inputs, skipped lines, notes
    glance: list[str]       # the five-line summary
    sections: list[Section]


def markdown(doc: Document) -> str:
    out = [f"# {doc.title}", "", *(f"{line}  " for line in doc.header), "", "## At a glance", ""]
    out += [f"- {line}" for line in doc.glance] + [""]
    for section in doc.sections:
        out += ["#" * section.level + " " + section.title, ""]
        for block in section.blocks:
            if isinstance(block, Table):
                out += [f"{block.folded}:", ""] if block.folded else []
                out += markdown_table(block.frame)
            elif isinstance(block, Figure):
                out += [f"*Figure (in report.html): {block.alt}*", ""]
            else:
                out += [block, ""]
    return "\n".join(out)


def markdown_table(frame: pd.DataFrame) -> list[str]:
    cell = lambda value: str(value).replace("|", "/").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(map(cell, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in frame.itertuples(index=False)]
    return lines + [""]


_STYLE = """
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2430;background:#fff}
main{max-width:1180px;margin:0 auto;padding:12px 20px 40px}
h1{font-size:22px;margin:8px 0 4px}h2{font-size:18px;margin:28px 0 6px;border-bottom:1px solid #d8dde6}
h3{font-size:15px;margin:18px 0 4px}p{margin:4px 0 8px}.meta{color:#586174;font-size:12px;margin:0}
.glance{background:#f3f6fa;border:1px solid #d8dde6;border-radius:6px;padding:6px 14px;margin:10px 0}
.glance ul{margin:0;padding-left:18px}nav{font-size:13px;margin:8px 0}nav a{margin-right:12px}
a{color:#1f5fbf;text-decoration:none}.scroll{max-width:100%;overflow-x:auto}
table{border-collapse:collapse;font-size:12px;margin:4px 0 10px}
th,td{border:1px solid #d8dde6;padding:2px 7px;vertical-align:top;white-space:nowrap}
th{background:#f3f6fa;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.good{background:#e2f4e5}td.bad{background:#fbe3e1}td.warn{background:#fff4d6}
td.long{white-space:normal;min-width:120px;overflow-wrap:break-word}
img{display:block;max-width:100%;height:auto;margin:6px 0 12px}
details{margin:4px 0 10px}summary{cursor:pointer;color:#1f5fbf}
"""
_LONG = 24   # characters: a longer cell wraps at its spaces, a shorter one stays on one line
_NUMBER = re.compile(r"^[-+]?[\d,.]+(e[-+]?\d+)?\s*(x|%|ms|s|MiB|†)*\s*[†]?$")


def html_page(doc: Document) -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{e(doc.title)}</title><style>{_STYLE}</style></head><body><main>", f"<h1>{e(doc.title)}</h1>"]
    out += [f'<p class="meta">{e(line)}</p>' for line in doc.header]
    out += ['<div class="glance"><ul>', *(f"<li>{e(line)}</li>" for line in doc.glance), "</ul></div>"]
    out.append("<nav>" + "".join(f'<a href="#{s.anchor}">{e(s.title)}</a>' for s in doc.sections if s.level == 2)
               + "</nav>")
    for section in doc.sections:
        level = section.level
        out.append(f'<h{level} id="{section.anchor}">{e(section.title)}</h{level}>')
        for block in section.blocks:
            if isinstance(block, Table):
                out.append(_html_table(block))
            elif isinstance(block, Figure):
                data = base64.b64encode(block.png).decode("ascii")
                out.append(f'<img alt="{e(block.alt)}" src="data:image/png;base64,{data}">')
            else:
                out.append(f"<p>{e(block)}</p>")
    out.append("</main></body></html>")
    return "\n".join(out)


def _html_table(table: Table) -> str:
    e = html.escape
    frame = table.frame
    rows = ["<tr>" + "".join(f"<th>{e(str(c))}</th>" for c in frame.columns) + "</tr>"]
    for i in range(len(frame)):
        cells = []
        for j, value in enumerate(frame.iloc[i]):
            text = str(value)
            classes = ["num" if j and _NUMBER.match(text) else "long" if len(text) > _LONG else "text"]
            if table.marks is not None and table.marks.iat[i, j]:
                classes.append(table.marks.iat[i, j])
            tip = table.tips.iat[i, j] if table.tips is not None else None
            title = f' title="{e(str(tip))}"' if tip else ""
            cells.append(f'<td class="{" ".join(classes)}"{title}>{e(text)}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    body = f'<div class="scroll"><table>{"".join(rows)}</table></div>'
    return f"<details><summary>{e(table.folded)}</summary>{body}</details>" if table.folded else body
