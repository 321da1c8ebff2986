"""Are a CPU sweep's cells fair to each other? (`make bench-fairness`)

    python scripts/bench_fairness.py [--rounds 3] [--backends eager,inductor,onnxruntime,openvino] [-- overrides]

ONNX Runtime's idle workers spin after a run and take the cores from whatever runs next in the process (and torch's
from ORT). Three ways to run one sweep's cells, each round in fresh processes, interleaved round by round:
- together, spinning on: every backend in one `bench` process, ORT's workers allowed to spin;
- together, spinning off: the same, with `bench.onnxruntime.spinning=false` (speedlab's default);
- apart: one `bench` process per backend (nothing else in the process to interfere with).
Per backend and batch size: the median p50 over the rounds in each mode, and each mode against apart. The mode
whose figures match apart is fair. The quick ConvNeXt by default; overrides after `--` change the model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from speedlab import record, stats, study  # noqa: E402
from speedlab.study import Row  # noqa: E402

MODES = ("together, spinning on", "together, spinning off", "apart")
BATCHES = (1, 64)


def rows_for(names: list[str], extra: list[str]) -> list[Row]:
    """The three ways to run the cells, as study rows: one bench process for all backends (spinning on, off), and
    one per backend."""

    def bench(label: str, backends: list[str], spinning: bool) -> Row:
        return Row(label, "bench", ("+preset=quick", f"bench.backends=[{','.join(backends)}]",
                                    f"bench.batch_sizes=[{','.join(map(str, BATCHES))}]",
                                    f"bench.onnxruntime.spinning={str(spinning).lower()}", *extra))  # fmt: skip

    return [bench(MODES[0], names, True), bench(MODES[1], names, False),
            *(bench(f"{MODES[2]}: {name}", [name], False) for name in names)]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="eager,inductor,onnxruntime,openvino")
    parser.add_argument("--study", default="bench-fairness", help="docs/results/<study>.md and .csv")
    parser.add_argument("--results-dir", type=Path, default=study.RESULTS_DIR, help="where the study's table goes")
    parser.add_argument("extra", nargs="*", help="bench overrides for every run (after --)")
    args = parser.parse_args(argv)
    names = args.backends.split(",")
    out = record.new_run_dir("bench-fairness")
    rows = rows_for(names, args.extra)
    p50: dict[tuple[str, str, int], list[float]] = {}
    with record.recording(out, "bench_fairness", {"args": {**vars(args), "results_dir": str(args.results_dir)}}) as rec:
        outcomes = study.run(rows, out_dir=out, repeats=args.rounds)  # round by round: interleaved
        yardsticks = [o.result["yardstick_flops_per_s"]["fp32"] for o in outcomes if o.ok]
        for outcome in (o for o in outcomes if o.ok):
            mode = outcome.row.label.split(":")[0]
            for cell in outcome.result["rows"]:
                if cell["status"] == "ok":
                    p50.setdefault((mode, cell["backend"], cell["batch_size"]), []).append(cell["p50_ms"])
        table = []
        for name in names:
            for batch in BATCHES:
                medians = {m: stats.median(p50[(m, name, batch)]) for m in MODES if (m, name, batch) in p50}
                apart = medians.get(MODES[2])
                table.append({"backend": name, "batch_size": batch, "p50_ms": medians,
                              "vs_apart": {m: v / apart for m, v in medians.items()} if apart else {}})  # fmt: skip
        rec.update({"rows": table, "yardstick_gflops": [y / 1e9 for y in yardsticks]})
    header = ["Backend", "Batch", *(f"p50 {m}" for m in MODES), "on / apart", "off / apart"]
    lines = [[r["backend"], str(r["batch_size"]),
              *(f"{r['p50_ms'][m]:.3f} ms" if m in r["p50_ms"] else "–" for m in MODES),
              *(f"{r['vs_apart'][m]:.2f}×" if m in r["vs_apart"] else "–" for m in MODES[:2])]
             for r in table]  # fmt: skip
    span = f"{min(yardsticks) / 1e9:.0f}–{max(yardsticks) / 1e9:.0f} GFLOP/s" if yardsticks else "not measured"
    md, _ = study.write(args.study, header, lines, results_dir=args.results_dir, machine=study.machine(outcomes),
                        title=f"Are a CPU sweep's cells fair to each other? (median of {args.rounds} rounds)",
                        notes=[f"fp32 matmul yardstick over the runs: {span}.",
                               f"Command: `python scripts/bench_fairness.py --rounds {args.rounds} --backends "
                               f"{args.backends}`"])  # fmt: skip
    print("\n" + md.read_text() + f"\nresult: {rec.path}")
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
