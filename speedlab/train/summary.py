"""The end-of-run summary in the reference study's shape: Changes | Train epoch time | Val accuracy, plus
samples/s, achieved FLOP/s against the machine's matmul yardstick, compile time and peak memory. Regression runs
show their val MSE in the accuracy column's place."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from speedlab import tables

COLUMNS = ("Changes", "Train epoch time", "Val accuracy", "Images/s", "Achieved", "Compile time", "Peak memory")
VAL_COLUMN = COLUMNS[2]


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

    regression = result.get("final_val_mse") is not None
    loss_only = result.get("metric") == "val_loss"  # the user's loss, with no output the task's figures read
    epoch_time = result.get("mean_epoch_time_s")
    return {
        "Changes": result.get("changes", result.get("name", "?")),
        # Tiny epochs (one full-batch step) read better in milliseconds.
        "Train epoch time": num("mean_epoch_time_s", "{:.2f} s" if (epoch_time or 1) >= 0.1 else "{:.4f} s"),
        VAL_COLUMN: (
            num("final_val_mse", "MSE {:.4g}")
            if regression
            else num("final_val_loss", "loss {:.4g}")
            if loss_only
            else num("final_val_acc", "{:.2f} %")
        ),
        "Images/s": num("mean_images_per_s", "{:,.0f}"),
        "Achieved": _achieved(result),
        "Compile time": num("compile_time_s", "{:.1f} s"),
        "Peak memory": _size(result.get("peak_memory_bytes")),
    }


def _achieved(result: dict[str, Any]) -> str:
    """Achieved GFLOP/s and its share of the matmul yardstick in the run's compute dtype."""
    flops = result.get("mean_achieved_flops_per_s")
    if not flops:
        return "-"
    share = result.get("efficiency")
    of = f" ({share:.0%} of {result.get('yardstick_precision')} peak)" if share is not None else ""
    return f"{flops / 1e9:,.1f} GFLOP/s{of}"


def skipped_row(changes: str, reason: str) -> dict[str, str]:
    return {c: "-" for c in COLUMNS} | {"Changes": changes, "Train epoch time": f"skipped: {reason}"}


def markdown(rows: Sequence[dict[str, str]]) -> str:
    """A Markdown table (readable as plain text too), numbers right-aligned."""
    regression_only = all(r[VAL_COLUMN].startswith("MSE") or r[VAL_COLUMN] == "-" for r in rows)
    renamed = {VAL_COLUMN: "Val MSE", "Images/s": "Samples/s"} if regression_only else {}
    names = {c: renamed.get(c, c) for c in COLUMNS}
    if regression_only:  # the header says MSE already
        rows = [{**r, VAL_COLUMN: r[VAL_COLUMN].removeprefix("MSE ")} for r in rows]
    return tables.markdown([names[c] for c in COLUMNS], [[r[c] for c in COLUMNS] for r in rows],
                           right=[i > 0 for i in range(len(COLUMNS))], pad=True)  # fmt: skip
