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
import json
import statistics
import subprocess
import sys
from pathlib import Path

from speedlab import record

MODES = ("together, spinning on", "together, spinning off", "apart")


def bench(run_dir: Path, backends: list[str], spinning: bool, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "speedlab", "bench", "+preset=quick", f"bench.backends=[{','.join(backends)}]",
           "bench.batch_sizes=[1,64]", f"bench.onnxruntime.spinning={str(spinning).lower()}", *extra,
           f"hydra.run.dir={run_dir}"]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(record.result_path(run_dir).read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="eager,inductor,onnxruntime,openvino")
    parser.add_argument("extra", nargs="*", help="bench overrides for every run (after --)")
    args = parser.parse_args()
    names = args.backends.split(",")
    out = record.new_run_dir("bench-fairness")
    p50: dict[tuple[str, str, int], list[float]] = {}
    yardsticks: list[float] = []
    with record.recording(out, "bench_fairness", {"args": vars(args)}) as rec:
        for r in range(args.rounds):
            runs = {
                MODES[0]: [bench(out / f"{r}-together-spin", names, True, args.extra)],
                MODES[1]: [bench(out / f"{r}-together-nospin", names, False, args.extra)],
                MODES[2]: [bench(out / f"{r}-apart-{n}", [n], False, args.extra) for n in names],
            }
            for mode, results in runs.items():
                for result in results:
                    yardsticks.append(result["yardstick_flops_per_s"]["fp32"])
                    for row in result["rows"]:
                        if row["status"] == "ok":
                            p50.setdefault((mode, row["backend"], row["batch_size"]), []).append(row["p50_ms"])
            print(f"round {r + 1}/{args.rounds} done", flush=True)
        rows = []
        for name in names:
            for batch in (1, 64):
                medians = {m: statistics.median(p50[(m, name, batch)]) for m in MODES if (m, name, batch) in p50}
                apart = medians.get("apart")
                rows.append({"backend": name, "batch_size": batch, "p50_ms": medians,
                             "vs_apart": {m: v / apart for m, v in medians.items()} if apart else {}})  # fmt: skip
        rec.update({"rows": rows, "yardstick_gflops": [y / 1e9 for y in yardsticks]})
    head = "| Backend | Batch | " + " | ".join(f"p50 {m}" for m in MODES) + " | on / apart | off / apart |"
    lines = [head, "|---|---:|" + "---:|" * (len(MODES) + 2)]
    for row in rows:
        cells = " | ".join(f"{row['p50_ms'].get(m, float('nan')):.3f} ms" for m in MODES)
        ratios = " | ".join(f"{row['vs_apart'].get(m, float('nan')):.2f}×" for m in MODES[:2])
        lines.append(f"| {row['backend']} | {row['batch_size']} | {cells} | {ratios} |")
    print("\n" + "\n".join(lines))
    print(f"\nfp32 matmul yardstick over the runs: {min(yardsticks) / 1e9:.0f}–{max(yardsticks) / 1e9:.0f} GFLOP/s; "
          f"median of {args.rounds} rounds; result: {rec.path}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
