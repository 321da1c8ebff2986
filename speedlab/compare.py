"""`python -m speedlab compare A B [--threshold 0.05] [--json]`: did B get slower than A? An exit code CI can gate on.

A and B are runs, folders of runs or sweep folders (bench or train). Each side's bench cells and train runs are
paired by their config fingerprint (`speedlab.fingerprint`: model, data shape, batch size, precision, backend and
its options, levers; not the commit, machine or versions, which the output's first lines state when they differ).
Per pair: the ratio B / A of the medians with its 95 % interval and a verdict, `faster`, `slower` or `no significant
change`, against a threshold (5 % unless `--threshold`).

Honest about this kind of machine: calls within one process share its drift (two processes of one config have
differed by 10-27 % here), so the interval is taken over fresh processes, one value per run, when each side has at
least two runs of the pair (interleave them: A, B, A, B, ...). With a single run on a side, the interval comes from
that run's own calls or steps, which cannot separate a change from machine drift, so a change is flagged only
beyond the threshold plus `--drift` (30 % unless given). A train run's accuracy falling more than `--accuracy-drop`
points (1 unless given) is a regression too, and so is a cell that ran in A and fails in B.

Exit codes: 0 no regression, 1 a regression (a pair slower beyond the threshold, significantly), 2 bad input (a
missing path, a side without runs, bench against train, an unreadable raw-samples file).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from speedlab import fingerprint, results, samples, stats, status
from speedlab.errors import SpeedlabError
from speedlab.fingerprint import Fingerprint
from speedlab.tables import markdown

DEFAULT_THRESHOLD = 0.05
# Two single processes of one config differed by up to 27 % on this project's machines (issue 25): a single run per
# side cannot tell a change smaller than that from drift.
DEFAULT_DRIFT = 0.30
DEFAULT_ACCURACY_DROP = 1.0  # points of top-1 accuracy
EXIT_OK, EXIT_REGRESSION, EXIT_BAD_INPUT = 0, 1, 2


@dataclass
class Unit:
    """One measured thing of one run: a bench cell, or a train run."""

    run: dict[str, Any]
    fp: Fingerprint
    label: str
    row: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return (self.row or self.run)["status"] == status.OK

    def value(self) -> float:
        """The figure compared: a cell's p50 latency (ms), a train run's median step time (s)."""
        if self.row is not None:
            return float(self.row["p50_ms"])
        raw = self.raw()
        if raw is not None and len(raw):
            return stats.median(raw)
        return self.run["mean_epoch_time_s"] / max(1, self.run.get("steps_per_epoch") or 1)

    def raw(self) -> np.ndarray | None:
        """Every call (cell) or step (train run) this unit timed, from the raw-samples file; None for a result
        written before speedlab kept them."""
        run_dir = Path(self.run["_dir"])
        if self.row is not None:
            keys = self.row.get("samples")
            return np.concatenate(list(samples.read(run_dir, keys).values())) if keys else None
        named = self.run.get("samples") or {}
        return samples.read(run_dir, [named["step_s"]])[named["step_s"]] if named.get("step_s") else None


@dataclass
class Side:
    path: str
    runs: list[dict[str, Any]]
    units: dict[str, list[Unit]] = field(default_factory=lambda: defaultdict(list))

    def describe(self) -> str:
        kinds = sorted({r["kind"] for r in self.runs})
        envs = sorted({f"{results.machine_name(r)}, torch {r['env'].get('torch')}, speedlab "
                       f"{r.get('speedlab_version')}, commit {results.commit(r)}" for r in self.runs})  # fmt: skip
        return f"{self.path}: {len(self.runs)} {'/'.join(kinds)} run{'s' * (len(self.runs) != 1)} on " + "; ".join(envs)


def load_side(path: str) -> Side:
    """Every bench and train run under `path`, split into units keyed by fingerprint."""
    root = Path(path)
    if not root.exists():
        raise SpeedlabError(f"{path}: no such run or directory")
    found = [r for r in results.collect([root], finished_only=False) if r["kind"] in ("bench", "train")]
    if not found:
        raise SpeedlabError(f"{path}: no bench or train runs (no result.json of kind bench or train under it)")
    side = Side(path, found)
    for run in found:
        if run["kind"] == "bench":
            for row in run.get("rows") or []:
                fp = fingerprint.of_cell(run, row)
                label = f"{row['backend']} {row['precision']} batch {row['batch_size']}"
                label += f", {row['concurrency']} in flight" if row.get("concurrency", 1) > 1 else ""
                side.units[fp.key(env=False, commit=False)].append(Unit(run, fp, label, row))
        else:
            fp = fingerprint.of_train(run)
            label = f"train {run.get('changes', '?')} (batch {fp.config.get('trainer.batch_size')})"
            side.units[fp.key(env=False, commit=False)].append(Unit(run, fp, label))
    return side


@dataclass
class Pair:
    label: str
    metric: str
    unit: str
    a: float | None
    b: float | None
    ratio: float | None
    low: float | None
    high: float | None
    p_value: float | None
    n_a: int
    n_b: int
    basis: str
    verdict: str
    regression: bool
    note: str = ""


def verdict(ratio: stats.Ratio, bound: float) -> str:
    """faster, slower or no significant change: the whole interval beyond the bound, or not."""
    if ratio.low > 1 + bound:
        return "slower"
    if ratio.high < 1 / (1 + bound):
        return "faster"
    return "no significant change"


def compare_speed(label: str, units_a: list[Unit], units_b: list[Unit], threshold: float, drift: float) -> Pair:
    """The time figure of one matched pair, with the test the evidence allows (see the module docstring)."""
    is_cell = units_a[0].row is not None
    metric, unit = ("p50 latency", "ms") if is_cell else ("step time", "s")
    values_a, values_b = [u.value() for u in units_a], [u.value() for u in units_b]
    if len(units_a) >= 2 and len(units_b) >= 2:
        ratio = stats.ratio_of_medians(values_a, values_b)
        basis, bound = f"{len(units_a)} vs {len(units_b)} processes", threshold
    else:
        raw_a, raw_b = [u.raw() for u in units_a], [u.raw() for u in units_b]
        if any(r is None for r in [*raw_a, *raw_b]):
            ratio = stats.ratio_of_medians(values_a, values_b)
        else:
            ratio = stats.ratio_of_medians(np.concatenate(raw_a), np.concatenate(raw_b))
        basis, bound = "single runs: drift not separable", threshold + drift
    found = verdict(ratio, bound)
    # A p-value over one process's calls would call every drift significant: shown only for processes.
    p_value = ratio.p_value if "processes" in basis else None
    return Pair(label, metric, unit, stats.median(values_a), stats.median(values_b), ratio.ratio, ratio.low,
                ratio.high, p_value, len(units_a), len(units_b), basis, found, found == "slower")  # fmt: skip


def compare_accuracy(label: str, units_a: list[Unit], units_b: list[Unit], drop: float,
                     threshold: float) -> Pair | None:  # fmt: skip
    """A train pair's final validation figure: accuracy falling more than `drop` points, or a loss/MSE rising more
    than `threshold`, is a regression."""
    metric = units_a[0].run.get("metric", "val_acc")
    a = [u.run.get(f"final_{metric}") for u in units_a]
    b = [u.run.get(f"final_{metric}") for u in units_b]
    if None in a or None in b or not a or not b:
        return None
    ma, mb = stats.median(a), stats.median(b)
    basis = f"{len(a)} vs {len(b)} runs"
    if metric == "val_acc":
        worse, better = ma - mb > drop, mb - ma > drop
        found = "lower" if worse else "higher" if better else "no significant change"
        ratio = None
        note = f"{mb - ma:+.2f} points (regression beyond −{drop:g})"
        unit = "%"
    else:  # a loss or MSE: lower is better
        ratio = mb / ma if ma else None
        worse = ratio is not None and ratio > 1 + threshold
        found = "worse" if worse else "better" if ratio is not None and ratio < 1 / (1 + threshold) else \
            "no significant change"  # fmt: skip
        note, unit = "", ""
    return Pair(label, metric, unit, ma, mb, ratio, None, None, None, len(a), len(b), basis, found, worse, note)


@dataclass
class Comparison:
    a: Side
    b: Side
    threshold: float
    drift: float
    pairs: list[Pair]
    unmatched: list[str]
    environment: list[str]

    @property
    def regressions(self) -> list[Pair]:
        return [p for p in self.pairs if p.regression]

    @property
    def exit_code(self) -> int:
        return EXIT_REGRESSION if self.regressions else EXIT_OK


def compare(side_a: Side, side_b: Side, threshold: float = DEFAULT_THRESHOLD, drift: float = DEFAULT_DRIFT,
            accuracy_drop: float = DEFAULT_ACCURACY_DROP) -> Comparison:  # fmt: skip
    kinds_a, kinds_b = {r["kind"] for r in side_a.runs}, {r["kind"] for r in side_b.runs}
    if not kinds_a & kinds_b:
        raise SpeedlabError(f"A holds {'/'.join(sorted(kinds_a))} runs and B holds {'/'.join(sorted(kinds_b))} runs: "
                            "compare bench with bench, train with train")  # fmt: skip
    pairs, unmatched = [], []
    for key, units_a in side_a.units.items():
        units_b = side_b.units.get(key)
        label = units_a[0].label
        if not units_b:
            unmatched.append(f"A only: {label}: {_nearest(units_a[0], side_b)}")
            continue
        ok_a, ok_b = [u for u in units_a if u.ok], [u for u in units_b if u.ok]
        if not ok_a:
            unmatched.append(f"not compared: {label}: {_failure(units_a)} in A")
            continue
        if not ok_b:
            why = _failure(units_b)
            skipped = all((u.row or u.run)["status"] == status.SKIPPED for u in units_b)
            pairs.append(Pair(label, "status", "", None, None, None, None, None, None, len(ok_a), 0,
                              "ran in A", f"{why} in B", regression=not skipped))  # fmt: skip
            continue
        pairs.append(compare_speed(label, ok_a, ok_b, threshold, drift))
        if ok_a[0].row is None:
            accuracy = compare_accuracy(label, ok_a, ok_b, accuracy_drop, threshold)
            if accuracy is not None:
                pairs.append(accuracy)
    unmatched += [f"B only: {units[0].label}: {_nearest(units[0], side_a)}"
                  for key, units in side_b.units.items() if key not in side_a.units]  # fmt: skip
    return Comparison(side_a, side_b, threshold, drift, pairs, unmatched, _environment(side_a, side_b))


def _failure(units: list[Unit]) -> str:
    statuses = sorted({(u.row or u.run)["status"] for u in units})
    return "/".join(statuses)


def _nearest(unit: Unit, other: Side) -> str:
    """Why `unit` has no partner: the other side's closest fingerprint and what differs."""
    candidates = [u[0] for u in other.units.values() if u[0].fp.kind == unit.fp.kind]
    if not candidates:
        return f"the other side has no {unit.fp.kind} runs"
    nearest = min(candidates, key=lambda u: len(fingerprint.differences(unit.fp.config, u.fp.config, limit=99)))
    return "nearest differs in " + "; ".join(fingerprint.differences(unit.fp.config, nearest.fp.config))


def _environment(a: Side, b: Side) -> list[str]:
    """What differs between the sides' machines, versions and code: stated first, since it is part of any change."""
    lines = []
    for name, get in (("machine", results.machine_name), ("torch", lambda r: r["env"].get("torch")),
                      ("speedlab", lambda r: r.get("speedlab_version")), ("commit", results.commit)):  # fmt: skip
        va, vb = sorted({str(get(r)) for r in a.runs}), sorted({str(get(r)) for r in b.runs})
        if va != vb:
            lines.append(f"{name}: A {', '.join(va)}; B {', '.join(vb)}")
    return lines


def _value(pair: Pair, value: float | None) -> str:
    if value is None:
        return "–"
    if pair.unit == "ms":
        return f"{value:.4g} ms"
    if pair.unit == "s":
        return f"{value * 1e3:.4g} ms" if value < 1 else f"{value:.4g} s"
    return f"{value:.2f} %" if pair.unit == "%" else f"{value:.4g}"


def _ratio_text(pair: Pair) -> tuple[str, str]:
    if pair.ratio is None:
        return (pair.note or "–"), "–"
    interval = f"{pair.low:.3f}–{pair.high:.3f}" if pair.low is not None else "–"
    return f"{pair.ratio:.3f}", interval


def to_markdown(result: Comparison) -> str:
    lines = ["# speedlab compare", ""]
    if result.environment:
        lines += ["**A and B differ outside the config** (part of any change below):", ""]
        lines += [f"- {line}" for line in result.environment] + [""]
    lines += [f"- A: {result.a.describe()}", f"- B: {result.b.describe()}",
              f"- Threshold {result.threshold:.0%}; verdicts from the 95 % bootstrap interval of B / A over fresh "
              f"processes, or, with a single run on a side, over its calls, and then only beyond the threshold plus "
              f"{result.drift:.0%} of machine drift.", ""]  # fmt: skip
    rows = []
    for p in result.pairs:
        ratio, interval = _ratio_text(p)
        p_value = f"{p.p_value:.2g}" if p.p_value is not None else "–"
        rows.append([p.label, p.metric, _value(p, p.a), _value(p, p.b), ratio, interval, p_value, p.basis,
                     f"**{p.verdict}**" if p.regression else p.verdict])  # fmt: skip
    header = ["Pair", "Figure", "A", "B", "B / A", "95 % interval", "Mann-Whitney p", "Evidence", "Verdict"]
    lines += [markdown(header, rows, pad=True) if rows else "No pairs matched.", ""]
    if result.unmatched:
        lines += ["Not matched:", ""] + [f"- {u}" for u in result.unmatched] + [""]
    found = result.regressions
    lines.append(f"Result: {len(found)} regression{'s' * (len(found) != 1)} in {len(result.pairs)} pairs "
                 f"(exit {result.exit_code}).")  # fmt: skip
    return "\n".join(lines)


def to_json(result: Comparison) -> dict[str, Any]:
    return {
        "a": {"path": result.a.path, "runs": [r["_dir"] for r in result.a.runs]},
        "b": {"path": result.b.path, "runs": [r["_dir"] for r in result.b.runs]},
        "environment_differences": result.environment, "threshold": result.threshold, "drift": result.drift,
        "pairs": [vars(p) for p in result.pairs], "unmatched": result.unmatched,
        "regressions": len(result.regressions), "exit_code": result.exit_code,
    }  # fmt: skip


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (give a fraction, e.g. 0.05 for 5 %)") from None
    if not 0 <= value < 10:
        raise argparse.ArgumentTypeError(f"{text} is out of range: give a fraction >= 0, e.g. 0.05 for 5 %")
    return value


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m speedlab compare", description=__doc__.splitlines()[0])
    parser.add_argument("a", help="the baseline: a run, a folder of runs or a sweep folder")
    parser.add_argument("b", help="the candidate, the same kind of runs as A")
    parser.add_argument(
        "--threshold",
        type=_fraction,
        default=DEFAULT_THRESHOLD,
        help="smallest change that counts, as a fraction (default 0.05)",
    )
    parser.add_argument(
        "--drift",
        type=_fraction,
        default=DEFAULT_DRIFT,
        help="machine drift a single run per side cannot rule out (default 0.30)",
    )
    parser.add_argument(
        "--accuracy-drop",
        type=float,
        default=DEFAULT_ACCURACY_DROP,
        help="accuracy points a train run may lose before it is a regression (default 1)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of markdown")  # fmt: skip
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exit_:  # argparse: bad flags exit 2 already, --help 0
        return int(exit_.code or 0)
    try:
        result = compare(load_side(args.a), load_side(args.b), args.threshold, args.drift, args.accuracy_drop)
    except SpeedlabError as err:
        print(f"speedlab: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(to_json(result), indent=2, default=str) if args.json else to_markdown(result))
    return result.exit_code
