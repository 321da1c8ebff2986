"""Tables, shared by every command and script: one markdown writer and one CSV writer for rows of cells.

A numeric column (every cell a number, or empty) is right-aligned in markdown. Cells are written as given: callers
format their numbers (units, precision) before handing them over.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any


def _numeric(text: str) -> bool:
    stripped = text.strip().replace(",", "").split(" ")[0].rstrip("%×x")
    if stripped.endswith("."):  # "7. inspect" is a numbered label, not a number
        return False
    try:
        float(stripped)
    except ValueError:
        return False
    return True


def markdown(header: Sequence[str], rows: Sequence[Sequence[Any]], *, right: Sequence[bool] | None = None,
             pad: bool = False) -> str:  # fmt: skip
    """A GitHub-flavoured markdown table. `right` says which columns are right-aligned (default: the numeric ones);
    `pad` pads every cell to its column's width, so the table reads as plain text on a terminal too."""
    # A pipe or a line break inside a cell would end the cell or the row.
    cells = [["" if c is None else str(c).replace("|", "\\|").replace("\n", " ") for c in row] for row in rows]
    if right is None:
        right = [bool(cells) and all(_numeric(r[i]) or not r[i] or r[i] in "-–" for r in cells)
                 and any(_numeric(r[i]) for r in cells) for i in range(len(header))]  # fmt: skip
    widths = [max([len(h), *(len(r[i]) for r in cells)]) if pad else 0 for i, h in enumerate(header)]

    def line(values: Sequence[str], head: bool = False) -> str:
        pairs = enumerate(zip(values, widths, strict=True))
        return "| " + " | ".join(v.rjust(w) if right[i] and not head else v.ljust(w) for i, (v, w) in pairs) + " |"

    rule = "|" + "|".join(("-" * (max(w, 3) + 1) + ":") if r else "-" * (max(w, 3) + 2)
                          for w, r in zip(widths, right, strict=True)) + "|"  # fmt: skip
    if not pad:
        rule = "|" + "|".join("---:" if r else "---" for r in right) + "|"
    return "\n".join([line(header, head=True), rule, *(line(row) for row in cells)])


def csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """The same rows as CSV (RFC 4180 quoting)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([["" if c is None else c for c in row] for row in rows])
    return buffer.getvalue()
