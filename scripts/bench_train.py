"""Benchmark the training levers: the reference study's four rows (vanilla, tc, amp, tc_amp) on this machine.

    python scripts/bench_train.py [--exps vanilla,tc,amp,tc_amp] [--repeats 3] [-- extra overrides...]
    python scripts/bench_train.py --exps "vanilla,cpu_fast[trainer.batch_size=128]"   # a row's own overrides

One row per experiment of conf/exp/ on the quick preset, each run `--repeats` times in fresh processes, interleaved
(vanilla, tc, ..., vanilla, tc, ...) so that a slow spell of a shared machine hits every row alike (speedlab.study).
Per row: the median over repeats of the steady epoch time, images/s, compile time, val accuracy, achieved FLOP/s
against the run's matmul yardstick and peak memory, and the speed-up against the first row. Writes
docs/results/<study>.md and .csv (`--study`, default training-levers) and result.json (kind: bench_train).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from speedlab import record, study  # noqa: E402
from speedlab.study import Row  # noqa: E402

ROW = re.compile(r"\s*([\w-]+)\s*(?:\[([^\]]*)\])?\s*(?:,|$)")
HEADER = ["Changes", "Batch", "Train epoch time", "Speed-up", "Val accuracy", "Images/s", "Achieved",
          "Of matmul peak", "Compile time", "Peak RSS"]  # fmt: skip


def parse_rows(spec: str, extra: list[str]) -> list[Row]:
    """`vanilla,cpu_fast[trainer.batch_size=128]` -> one row per experiment. A row's own overrides come after the
    quick preset, so they can change what the preset sets (its batch size); `extra` applies to every row."""
    rows, pos = [], 0
    while pos < len(spec):
        match = ROW.match(spec, pos)
        if not match or match.end() == pos:
            raise SystemExit(f"--exps {spec!r}: expected EXP or EXP[key=value ...], comma-separated")
        label = match.group(0).strip().rstrip(",").strip()
        own = (match.group(2) or "").split()
        rows.append(Row(label, "train", (f"+exp={match.group(1)}", "+preset=quick", *own, *extra)))
        pos = match.end()
    return rows


def table(outcomes: list[study.Outcome], rows: list[Row]) -> list[list[str]]:
    """One line per row: medians over its successful repeats, the speed-up and accuracy against the first row."""
    base_time, base_acc = (study.median(outcomes, rows[0], k) for k in ("mean_epoch_time_s", "final_val_acc"))
    lines = []
    for row in rows:
        runs = study.results(outcomes, row)
        if not runs:
            lines.append([row.label, "", "failed", *[""] * (len(HEADER) - 3)])
            continue
        med = {k: study.median(outcomes, row, k) for k in ("mean_epoch_time_s", "final_val_acc", "mean_images_per_s",
               "mean_achieved_flops_per_s", "efficiency", "compile_time_s", "peak_memory_bytes")}  # fmt: skip
        acc = med["final_val_acc"] or 0.0
        delta = f" ({acc - base_acc:+.2f})" if base_acc is not None else ""
        speedup = f"{base_time / med['mean_epoch_time_s']:.2f}×" if base_time else "–"
        achieved = med["mean_achieved_flops_per_s"]
        lines.append([
            runs[0]["changes"], str(runs[0]["config"]["trainer"]["batch_size"]), f"{med['mean_epoch_time_s']:.2f} s",
            speedup, f"{acc:.2f} %{delta}", f"{med['mean_images_per_s']:,.0f}",
            f"{achieved / 1e9:.1f} GFLOP/s" if achieved else "–",
            f"{med['efficiency']:.1%} ({runs[0].get('yardstick_precision')})" if med["efficiency"] else "–",
            f"{med['compile_time_s']:.1f} s", f"{med['peak_memory_bytes'] / 2**30:.2f} GiB",
        ])  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exps", default="vanilla,tc,amp,tc_amp", help="comma-separated experiments; first = base")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--study", default="training-levers", help="docs/results/<study>.md and .csv")
    parser.add_argument("--results-dir", type=Path, default=study.RESULTS_DIR, help="where the study's table goes")
    parser.add_argument("extra", nargs="*", help="overrides for every run (after --)")
    args = parser.parse_args(argv)
    rows = parse_rows(args.exps, args.extra)
    bench_dir = record.new_run_dir("bench_train")
    settings = {"args": {**vars(args), "results_dir": str(args.results_dir)}}
    with record.recording(bench_dir, "bench_train", settings) as rec:
        outcomes = study.run(rows, out_dir=bench_dir, repeats=args.repeats)
        lines = table(outcomes, rows)
        rec["rows"] = [dict(zip(HEADER, line, strict=True)) for line in lines]
        rec["epoch_times"] = {r.label: [x["mean_epoch_time_s"] for x in study.results(outcomes, r)] for r in rows}
    where = study.machine(outcomes)
    title = f"Training levers on the quick preset (median of {args.repeats}, interleaved)"
    notes = ["Per-repeat epoch times (s): " + "; ".join(f"{k}: {', '.join(f'{t:.2f}' for t in v)}"
                                                          for k, v in rec["epoch_times"].items()),
             f"Command: `python scripts/bench_train.py --exps \"{args.exps}\" --repeats {args.repeats}"
             + (f" -- {' '.join(args.extra)}" if args.extra else "") + "`"]  # fmt: skip
    md, _ = study.write(args.study, HEADER, lines, title=title, machine=where, notes=notes,
                        results_dir=args.results_dir)  # fmt: skip
    print(f"\n{title}; {where}\n\n" + md.read_text().split("\n\n", 2)[2])
    print(f"result: {rec.path}\ntable: {md}")
    failed = [o for o in outcomes if not o.ok]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
