"""The end-of-run summary in the reference study's shape: Changes | Train epoch time | Val accuracy, plus
images/s, compile time and peak memory."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

COLUMNS = ("Changes", "Train epoch time", "Val accuracy", "Images/s", "Compile time", "Peak memory")


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n}"  # unreachable


def row(result: dict[str, Any]) -> dict[str, str]:
    """One table row from a train result.json's data."""

    def num(key: str, fmt: str) -> str:
        value = result.get(key)
        return "-" if value is None else fmt.format(value)

    return {
        "Changes": result.get("changes", result.get("name", "?")),
        "Train epoch time": num("mean_epoch_time_s", "{:.2f} s"),
        "Val accuracy": num("final_val_acc", "{:.2f} %"),
        "Images/s": num("mean_images_per_s", "{:,.0f}"),
        "Compile time": num("compile_time_s", "{:.1f} s"),
        "Peak memory": _size(result.get("peak_memory_bytes")),
    }


def skipped_row(changes: str, reason: str) -> dict[str, str]:
    return {c: "-" for c in COLUMNS} | {"Changes": changes, "Train epoch time": f"skipped: {reason}"}


def markdown(rows: Sequence[dict[str, str]]) -> str:
    """A Markdown table (readable as plain text too), numbers right-aligned."""
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in COLUMNS}
    line = "| " + " | ".join(c.ljust(widths[c]) for c in COLUMNS) + " |"
    rule = "|" + "|".join("-" * (widths[c] + 1) + (":" if i else "-") for i, c in enumerate(COLUMNS)) + "|"
    body = [
        "| "
        + " | ".join(r[c].ljust(widths[c]) if i == 0 else r[c].rjust(widths[c]) for i, c in enumerate(COLUMNS))
        + " |"
        for r in rows
    ]
    return "\n".join([line, rule, *body])
