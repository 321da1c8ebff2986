"""Benchmark the training levers: the reference study's four rows (vanilla, tc, amp, tc_amp) on this machine.

    python scripts/bench_train.py [--exps vanilla,tc,amp,tc_amp] [--repeats 3] [-- extra overrides...]
    python scripts/bench_train.py --exps "vanilla,cpu_fast[trainer.batch_size=128]"   # a row's own overrides

Runs `python -m speedlab train +exp=E +preset=quick` for each experiment, `--repeats` times in fresh processes,
interleaved (vanilla, tc, ..., vanilla, tc, ...) so that a slow spell of a shared machine hits every row alike.
Reports per row the median over repeats of the steady epoch time, images/s, compile time, val accuracy and peak
memory, and the speed-up against the first experiment. Writes result.json (kind: bench_train) under artifacts/runs/.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

from speedlab import record

METRICS = (
    "mean_epoch_time_s",
    "mean_images_per_s",
    "compile_time_s",
    "final_val_acc",
    "peak_memory_bytes",
    "mean_achieved_flops_per_s",
    "efficiency",
)


ROW = re.compile(r"\s*([\w-]+)\s*(?:\[([^\]]*)\])?\s*(?:,|$)")


def parse_rows(spec: str) -> dict[str, tuple[str, list[str]]]:
    """`vanilla,cpu_fast[trainer.batch_size=128]` -> {row: (experiment, its own overrides)}. A row's overrides come
    after the quick preset, so they can change what the preset sets (its batch size)."""
    rows, pos = {}, 0
    while pos < len(spec):
        match = ROW.match(spec, pos)
        if not match or match.end() == pos:
            raise SystemExit(f"--exps {spec!r}: expected EXP or EXP[key=value ...], comma-separated")
        rows[match.group(0).strip().rstrip(",").strip()] = (match.group(1), (match.group(2) or "").split())
        pos = match.end()
    return rows


def run_once(exp: str, run_dir: Path, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "speedlab", "train", f"+exp={exp}", "+preset=quick", *extra,
           f"hydra.run.dir={run_dir}"]  # fmt: skip
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return json.loads(record.result_path(run_dir).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exps", default="vanilla,tc,amp,tc_amp", help="comma-separated experiments; first = base")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("extra", nargs="*", help="overrides for every run (after --)")
    args = parser.parse_args()
    specs = parse_rows(args.exps)
    exps = list(specs)

    bench_dir = record.new_run_dir("bench_train")
    with record.recording(bench_dir, "bench_train", {"args": vars(args)}) as rec:
        runs: dict[str, list[dict]] = {e: [] for e in exps}
        for i in range(args.repeats):
            for exp in exps:
                name, own = specs[exp]
                result = run_once(name, record.job_dir(bench_dir, f"{len(runs[exp])}-{i}-{name}"), [*own, *args.extra])
                runs[exp].append(result)
                print(f"repeat {i + 1}/{args.repeats} {exp}: {result['mean_epoch_time_s']:.2f} s/epoch", flush=True)
        rows = [
            {"exp": e, "changes": rs[0]["changes"], "batch_size": rs[0]["config"]["trainer"]["batch_size"],
             **{m: statistics.median(r[m] for r in rs) for m in METRICS},
             "epoch_times": [r["mean_epoch_time_s"] for r in rs]}
            for e, rs in runs.items()
        ]  # fmt: skip
        base = rows[0]
        for row in rows:
            row["speedup"] = base["mean_epoch_time_s"] / row["mean_epoch_time_s"]
            row["val_acc_delta"] = row["final_val_acc"] - base["final_val_acc"]
        rec["rows"] = rows

    env = rec["env"]
    print(
        f"\nTraining levers, quick preset ({runs[exps[0]][0]['params']:,} parameters); median of {args.repeats}; "
        f"{env['cpu']['model']}, {env['cpu']['affinity']} cores, torch {env['torch']}\n"
    )
    print("| Changes | Batch | Train epoch time | Speed-up | Val accuracy | Images/s | Achieved | Of matmul peak "
          "| Compile time | Peak RSS |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        precision = runs[r["exp"]][0].get("yardstick_precision")
        print(
            f"| {r['changes']} | {r['batch_size']} | {r['mean_epoch_time_s']:.2f} s | {r['speedup']:.2f}x | "
            f"{r['final_val_acc']:.2f} % "
            f"({r['val_acc_delta']:+.2f}) | {r['mean_images_per_s']:,.0f} | "
            f"{r['mean_achieved_flops_per_s'] / 1e9:.1f} GFLOP/s | {r['efficiency']:.1%} ({precision}) | "
            f"{r['compile_time_s']:.1f} s | {r['peak_memory_bytes'] / 2**30:.2f} GiB |"
        )
    print(f"\nresult: {rec.path}")


if __name__ == "__main__":
    main()
