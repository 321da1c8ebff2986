"""report.md as one self-contained HTML file (`report --html`): the tables as HTML tables, the plots embedded as
base64 PNG, no other file or network access needed to open it, so it can be mailed or attached to a CI job.

It reads the markdown the report itself writes (headings, pipe tables, images, bullet lists, paragraphs, inline
code), not markdown at large.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1400px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}th,td{border:1px solid #ccc;padding:4px 8px}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%}
code{background:#f3f3f3;padding:0 3px}"""
IMAGE = re.compile(r"^!\[([^\]]*)\]\(([^)]+)\)$")


def _inline(text: str) -> str:
    escaped = html.escape(text.replace("\\|", "|").replace("\\*", "*"))
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def _table(lines: list[str]) -> str:
    header, rule, *rows = lines
    right = [c.endswith(":") for c in _cells(rule)]
    head = "".join(f"<th>{_inline(c)}</th>" for c in _cells(header))
    body = []
    for row in rows:
        cells = _cells(row)
        body.append("<tr>" + "".join(f"<td{' class=num' if i < len(right) and right[i] else ''}>{_inline(c)}</td>"
                                     for i, c in enumerate(cells)) + "</tr>")  # fmt: skip
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _image(alt: str, name: str, folder: Path) -> str:
    path = folder / name
    if not path.is_file():
        return f"<p>(missing plot {html.escape(name)})</p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'


def to_html(markdown_text: str, folder: Path) -> str:
    """The report's markdown as a standalone HTML page; images are read from `folder` and embedded."""
    out, lines, i = [], markdown_text.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            out.append(_table(block))
            continue
        if line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            out.append(f"<ul>{''.join(items)}</ul>")
            continue
        heading = re.match(r"^(#{1,4}) (.*)$", line)
        image = IMAGE.match(line.strip())
        if heading:
            level = len(heading.group(1))
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif image:
            out.append(_image(image.group(1), image.group(2), folder))
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
        i += 1
    body = "\n".join(out)
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>speedlab report</title>"
            f"<style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n")  # fmt: skip
