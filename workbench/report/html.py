"""A report's markdown as one self-contained HTML page (tables, headings, images inline)."""

from __future__ import annotations

import html as html_lib
import re

_STYLE = "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"


def _table(lines: list[str]) -> str:
    """A markdown table's lines as an HTML table (the first row as headers)."""
    rows = [r.strip("|").split("|") for r in lines if not r.startswith("|---")]
    cells = "".join(
        "<tr>" + "".join(f"<{'th' if i == 0 else 'td'}>{html_lib.escape(c.strip())}"
                         f"</{'th' if i == 0 else 'td'}>" for c in row) + "</tr>"
        for i, row in enumerate(rows)
    )  # fmt: skip
    return f"<table>{cells}</table>"


def _line(line: str, images: dict[str, str]) -> str | None:
    """One markdown line (not of a table) as HTML; None for a blank line."""
    image = re.match(r"!\[(.*)\]\((.*)\)", line)
    if image and image.group(2) in images:
        return f'<img alt="{image.group(1)}" src="data:image/png;base64,{images[image.group(2)]}">'
    if line.startswith("#"):
        level = len(line) - len(line.lstrip("#"))
        return f"<h{level}>{html_lib.escape(line.lstrip('# '))}</h{level}>"
    if line.startswith("- "):
        return f"<li>{html_lib.escape(line[2:])}</li>"
    return f"<p>{html_lib.escape(line)}</p>" if line.strip() else None


def to_html(markdown: str, images: dict[str, str]) -> str:
    """The page of ``markdown``; ``images`` maps an image's file name to its base64 PNG."""
    body: list[str] = []
    table: list[str] = []
    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            table.append(line)
            continue
        if table:
            body.append(_table(table))
            table = []
        part = _line(line, images)
        if part is not None:
            body.append(part)
    head = f"<head><meta charset='utf-8'><style>{_STYLE}</style></head>"
    return f"<!doctype html><html>{head}<body>{''.join(body)}</body></html>"
