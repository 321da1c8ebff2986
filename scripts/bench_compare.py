"""Does `speedlab compare` tell a real slowdown from machine drift? (`make bench-compare`; issue 25's acceptance.)

Each try runs one bench config (quick ConvNeXt, eager, fp32, batch 64 unless told) in fresh processes, interleaved:
A, B, P, A, B, P, A, B, P, where A and B are the same config and P is the same bench pinned to one core
(`taskset -c 0`: one thread instead of two, a real slowdown). Then `speedlab compare A B` must find no significant
change (exit 0) and `speedlab compare A P` a regression (exit 1); the first single runs of each are compared too,
to show what one run per side can and cannot say. Writes docs/results/compare.md and .csv.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from speedlab import record, study

SIDES = {"A": (), "B": (), "P": ("taskset", "-c", "0")}


def compare(a: Path, b: Path) -> dict:
    """`speedlab compare a b --json`: its exit code and its one pair."""
    proc = subprocess.run([sys.executable, "-m", "speedlab", "compare", str(a), str(b), "--json"],
                          capture_output=True, text=True)  # fmt: skip
    if proc.returncode == 2:
        raise SystemExit(f"compare {a} {b} failed: {proc.stderr.strip()}")
    out = json.loads(proc.stdout)
    return {"exit": proc.returncode, **out["pairs"][0]}


def cell(found: dict) -> list[str]:
    interval = f"{found['low']:.3f}–{found['high']:.3f}" if found.get("low") is not None else "–"
    return [f"{found['ratio']:.3f}", interval, found["verdict"], str(found["exit"])]


def measure(base: Path, tries: int, runs: int, overrides: tuple[str, ...]) -> None:
    """Every try's runs, interleaved A, B, P, each in a fresh process, under `base/try-<t>/<side>/r<k>`."""
    for t in range(tries):
        for k in range(runs):
            for side, prefix in SIDES.items():
                row = study.Row(side, "bench", overrides, prefix=prefix)
                outcome = study.run_one(row, base / f"try-{t}" / side / f"r{k}", repeat=k)
                if not outcome.ok:
                    raise SystemExit(f"{side} run {k} of try {t} failed: {' '.join(outcome.stderr_tail)}")
        print(f"try {t + 1}: measured", flush=True)


def summarise(base: Path, results_dir: Path, batch: int) -> str:
    """The study's table from the runs under `base` (what `measure` left, or an earlier study's folder)."""
    rows, first, counts = [], None, {"same": 0, "pinned": 0}
    tries = sorted(base.glob("try-*"), key=lambda p: int(p.name.split("-")[1]))
    for here in tries:
        p50, yardsticks = {side: [] for side in SIDES}, []
        for side in SIDES:
            for run_dir in sorted((here / side).iterdir()):
                result = json.loads(record.result_path(run_dir).read_text())
                first = first or result
                p50[side].append(result["rows"][0]["p50_ms"])
                if side != "P":
                    yardsticks.append(result["yardstick_flops_per_s"]["fp32"] / 1e9)
        same, pinned = compare(here / "A", here / "B"), compare(here / "A", here / "P")
        single_same, single_pinned = (
            compare(here / "A" / "r0", here / "B" / "r0"),
            compare(here / "A" / "r0", here / "P" / "r0"),
        )
        counts["same"] += same["exit"] == 0
        counts["pinned"] += pinned["exit"] == 1
        unpinned = p50["A"] + p50["B"]
        rows.append([str(int(here.name.split("-")[1]) + 1), *cell(same), *cell(pinned),
                     f"{single_same['ratio']:.3f} ({single_same['verdict']})",
                     f"{single_pinned['ratio']:.3f} ({single_pinned['verdict']})",
                     f"{max(unpinned) / min(unpinned):.3f}", f"{sorted(yardsticks)[len(yardsticks) // 2]:.0f}",
                     " / ".join(f"{v:.2f}" for v in p50["A"]), " / ".join(f"{v:.2f}" for v in p50["B"]),
                     " / ".join(f"{v:.2f}" for v in p50["P"])])  # fmt: skip
    header = ["Try", "A vs B: B/A", "95 % interval", "Verdict", "Exit", "A vs pinned: P/A", "95 % interval",
              "Verdict", "Exit", "Single runs A vs B", "Single runs A vs pinned", "Spread of the 6 unpinned p50s",
              "fp32 yardstick (GFLOP/s, median of A and B)", "A p50s (ms)", "B p50s (ms)",
              "Pinned p50s (ms)"]  # fmt: skip
    runs = len(list((tries[0] / "A").iterdir())) if tries else 0
    notes = [
        f"- **Same config (A vs B): exit 0 in {counts['same']} of {len(tries)} tries. Pinned to one core: exit 1 "
        f"in {counts['pinned']} of {len(tries)}.**",
        f"- Each try: {runs} fresh processes per side, interleaved A, B, P; quick ConvNeXt, eager, fp32, batch "
        f"{batch}; the interval is the 95 % bootstrap interval of the ratio of the per-process medians; a "
        "verdict needs the whole interval beyond 5 %. The pinned side runs one thread (torch follows the affinity).",
        "- Single runs: one process per side; the interval then comes from its own calls, which cannot see the "
        "drift between processes (the spread column), so `compare` flags only a change beyond 5 % + 30 %.",
        f"- Runs: `{base}` (`scripts/bench_compare.py --from` it to summarise again).",
    ]
    md, _ = study.write("compare", header, rows, title="`speedlab compare`: a slowdown against machine drift",
                        machine=study.machine_of(first or {}), notes=notes, results_dir=results_dir)  # fmt: skip
    return f"{notes[0]}\nwritten: {md}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per side and try")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--from", dest="source", type=Path, help="summarise an earlier study's runs, measure nothing")
    parser.add_argument("--results-dir", type=Path, default=study.RESULTS_DIR)
    args = parser.parse_args()
    if args.source is not None:
        if not args.source.is_dir() or not list(args.source.glob("try-*")):
            raise SystemExit(f"--from {args.source}: not a bench-compare run directory (no try-*/ folders in it)")
        print(summarise(args.source, args.results_dir, args.batch))
        return 0
    if shutil.which("taskset") is None:
        raise SystemExit("taskset (util-linux) is needed to pin the slowed-down side to one core")
    overrides = ("+preset=quick", "bench.backends=[eager]", f"bench.batch_sizes=[{args.batch}]",
                 "bench.precisions=[fp32]", "monitor.enabled=false")  # fmt: skip
    base = record.new_run_dir("bench-compare")
    measure(base, args.tries, args.runs, overrides)
    print(summarise(base, args.results_dir, args.batch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
