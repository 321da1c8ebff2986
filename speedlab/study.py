"""Studies: speedlab commands run with overrides in fresh processes, repeated and interleaved, each run's result.json
collected, and the study's table written to `docs/results/<study>.md` and `.csv` by the study itself.

What every `scripts/` benchmark calls instead of its own "run speedlab and read result.json" helper:

    rows = [Row("vanilla", "train", ("+exp=vanilla", "+preset=quick")), Row("tc_amp", "train", (...))]
    outcomes = study.run(rows, repeats=3, out_dir=record.new_run_dir("bench_train"))
    study.write("training-levers", header, table_rows, machine=study.machine(outcomes))

Interleaving (row A, row B, ..., then A, B, ... again) spreads a slow spell of a shared machine over every row, and
fresh processes keep one run's compiled graphs, allocator and thread pools out of the next one's numbers.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speedlab import record, stats
from speedlab.fsutil import atomic_write_text
from speedlab.tables import csv_text, markdown

RESULTS_DIR = record.REPO_ROOT / "docs" / "results"


@dataclass(frozen=True)
class Row:
    """One row of a study: a label, the command and its overrides."""

    label: str
    command: str
    overrides: tuple[str, ...] = ()
    prefix: tuple[str, ...] = ()  # a launcher the process runs under, e.g. ("taskset", "-c", "0")


@dataclass
class Outcome:
    """One run of a row: where it ran, its exit code, its result.json (None when it left none) and its wall time."""

    row: Row
    repeat: int
    run_dir: Path
    returncode: int
    result: dict[str, Any] | None
    wall_s: float
    stderr_tail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.result is not None and self.result.get("status") == "ok"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:80] or "row"


def run(rows: Sequence[Row], *, out_dir: Path, repeats: int = 1, interleave: bool = True,
        env: dict[str, str] | None = None, timeout_s: float | None = None,
        say: Callable[[str], None] = print) -> list[Outcome]:  # fmt: skip
    """Every row `repeats` times, each run in a fresh `python -m speedlab` process with its run directory under
    `out_dir`; interleaved by default. A failed run is kept (with its stderr's tail), and the study goes on."""
    if repeats < 1:
        raise ValueError(f"repeats={repeats}: must be at least 1")
    order = ([(row, k) for k in range(repeats) for row in rows] if interleave
             else [(row, k) for row in rows for k in range(repeats)])  # fmt: skip
    outcomes = []
    for n, (row, k) in enumerate(order, 1):
        outcome = run_one(row, Path(out_dir) / f"{slug(row.label)}-{k}", repeat=k, env=env, timeout_s=timeout_s)
        outcomes.append(outcome)
        say(f"[{n}/{len(order)}] {row.label} (repeat {k + 1}): "
            + ("ok" if outcome.ok else f"failed ({outcome.returncode}): {' '.join(outcome.stderr_tail)[-200:]}")
            + f" in {outcome.wall_s:.1f} s")  # fmt: skip
    return outcomes


def run_one(row: Row, run_dir: Path, *, repeat: int = 0, env: dict[str, str] | None = None,
            timeout_s: float | None = None) -> Outcome:  # fmt: skip
    """`row` once, in a fresh `python -m speedlab` process whose run directory is `run_dir`."""
    args = list(row.overrides)
    # Shared settings go before a parity run's side flags (--a / --b): what follows them is one side's own.
    at = next((i for i, arg in enumerate(args) if arg in ("--a", "--b")), len(args))
    args.insert(at, f"hydra.run.dir={run_dir}")
    cmd = [*row.prefix, sys.executable, "-m", "speedlab", row.command, *args]
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              timeout=timeout_s)  # fmt: skip
        code, tail = proc.returncode, proc.stderr.strip().splitlines()[-5:]
    except subprocess.TimeoutExpired:
        code, tail = 124, [f"still running after {timeout_s} s: stopped"]
    return Outcome(row, repeat, Path(run_dir), code, _read(Path(run_dir)), time.perf_counter() - start, tail)


def _read(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads(record.result_path(run_dir).read_text())
    except (OSError, ValueError):
        return None


def results(outcomes: Sequence[Outcome], row: Row) -> list[dict[str, Any]]:
    """The result.json of every successful run of `row`, in run order."""
    return [o.result for o in outcomes if o.row == row and o.ok]


def median(outcomes: Sequence[Outcome], row: Row, key: str) -> float | None:
    """The median of `key` over `row`'s successful runs (None where none has it)."""
    values = [r[key] for r in results(outcomes, row) if r.get(key) is not None]
    return stats.median(values) if values else None


def machine(outcomes: Sequence[Outcome]) -> str:
    """The machine the study ran on, as its first successful run recorded it: CPU model, cores, GPU, torch."""
    for outcome in outcomes:
        if outcome.result and outcome.result.get("env"):
            return machine_of(outcome.result)
    return "unknown (no run finished)"


@dataclass(frozen=True)
class Table:
    """A further table of a study: a section `## title` of its markdown (then `notes`) and `<study>-<name>.csv`."""

    name: str
    title: str
    header: Sequence[str]
    rows: Sequence[Sequence[Any]]
    notes: Sequence[str] = ()


def write(study: str, header: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str, machine: str,
          notes: Sequence[str] = (), more: Sequence[Table] = (), results_dir: Path | None = None,
          ) -> tuple[Path, Path]:  # fmt: skip
    """`<study>.md` (title, when and where it ran, the table, notes, then a section per table of `more`) and
    `<study>.csv` (the main rows; `<study>-<name>.csv` for each of `more`) in `results_dir` (docs/results/), each
    written atomically. Returns the markdown's and the main CSV's paths."""
    where = Path(results_dir or RESULTS_DIR)
    when = time.strftime("%Y-%m-%d")
    lines = [f"# {title}", "", f"Measured {when} on {machine}; written by the study itself.", "",
             markdown(header, rows), "", *notes]  # fmt: skip
    for table in more:
        lines += ["", f"## {table.title}", "", markdown(table.header, table.rows), "", *table.notes]
        atomic_write_text(where / f"{study}-{table.name}.csv", csv_text(table.header, table.rows))
    md, csv = where / f"{study}.md", where / f"{study}.csv"
    atomic_write_text(md, "\n".join([*lines, ""]))
    atomic_write_text(csv, csv_text(header, rows))
    return md, csv


def machine_of(result: dict[str, Any]) -> str:
    """The machine one result.json (or a recording's data) names: CPU model, cores, GPU, torch."""
    env = result.get("env") or {}
    cpu = env.get("cpu", {})
    gpu = (env.get("gpu") or {}).get("name")
    return (f"{cpu.get('model', '?')}, {cpu.get('affinity', '?')} cores" + (f", {gpu}" if gpu else "")
            + f", torch {env.get('torch', '?')}")  # fmt: skip
