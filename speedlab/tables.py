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
    stripped = text.strip().rstrip("%×x").replace(",", "").split(" ")[0]
    try:
        float(stripped)
    except ValueError:
        return False
    return True


def markdown(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table; numeric columns right-aligned."""
    cells = [["" if c is None else str(c) for c in row] for row in rows]
    numeric = [bool(cells) and all(_numeric(r[i]) or not r[i] for r in cells) and any(r[i] for r in cells)
               for i in range(len(header))]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """The same rows as CSV (RFC 4180 quoting)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([["" if c is None else c for c in row] for row in rows])
    return buffer.getvalue()
