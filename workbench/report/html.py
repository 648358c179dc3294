"""A report's markdown as one self-contained HTML page: rendered by markdown-it-py (CommonMark
with GitHub tables), its PNG images inline as ``data:`` URIs."""

from __future__ import annotations

import base64
from collections.abc import Mapping

from markdown_it import MarkdownIt

_STYLE = (
    "body{font-family:sans-serif;max-width:72em;margin:auto;padding:1em}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
)


def to_html(markdown: str, images: Mapping[str, bytes]) -> str:
    """The page of ``markdown``; ``images`` maps an image's file name, as the markdown links
    it (``![effects](effects.png)``), to its PNG bytes, which the page embeds."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(markdown)
    for token in tokens:
        for child in token.children or []:
            src = child.attrGet("src") if child.type == "image" else None
            if isinstance(src, str) and src in images:
                data = base64.b64encode(images[src]).decode()
                child.attrSet("src", f"data:image/png;base64,{data}")
    body = md.renderer.render(tokens, md.options, {})
    head = f"<head><meta charset='utf-8'><style>{_STYLE}</style></head>"
    return f"<!doctype html><html>{head}<body>{body}</body></html>"
