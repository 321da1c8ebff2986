"""What the resource monitor costs a training step (`make bench-monitor`).

    python scripts/bench_monitor.py [--rounds 12] [--block-s 3] [--intervals 0.5,0.005]

The reference's MLP step (4-32-16-4 tanh, 10,000 samples, full batch, speedlab's Vanilla trainer): framework overhead
dominates it, so a sampler thread that takes the GIL shows here first. Blocks of steps run with the monitor off and
on at each interval, interleaved in one process in a shuffled order per round; mean and p50 step time per setting
over all rounds, each against off, and the median over rounds of each round's mean against that round's off
block (paired, so the machine's drift between rounds cancels). The monitor's own CPU time
(`sampler_cpu_fraction`) and the fp32 matmul yardstick of the same run are printed beside.

A 1 % effect is below what this shared machine resolves between blocks (about ±3 %), so the cost is also measured
amplified: sampling every 5 ms (100 times the default rate) and scaling the slowdown down to the default interval,
since the cost is per sample.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch

from speedlab import cli, record, stats, study
from speedlab.data.build import build_data
from speedlab.monitor import ResourceMonitor
from speedlab.roofline import yardstick
from speedlab.train import levers
from speedlab.train.builder import build_trainer


def step_block(step, seconds: float) -> list[float]:
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--block-s", type=float, default=3.0)
    parser.add_argument("--intervals", default="0.5,0.005")
    parser.add_argument("--study", default="monitor-cost", help="docs/results/<study>.md and .csv")
    parser.add_argument("--results-dir", type=Path, default=study.RESULTS_DIR, help="where the study's table goes")
    args = parser.parse_args()
    intervals = [float(v) for v in args.intervals.split(",")]
    settings = ["off", *(f"every {v:g} s" for v in intervals)]
    cfg = cli.compose("train", ["+exp=mlp_matexp"])
    where = torch.device("cpu")
    levers.apply_backend_flags(cfg.trainer, where)
    data = build_data(cfg.data, seed=0, batch_size=cfg.trainer.batch_size, device=where)
    trainer = build_trainer(cfg, data.spec, where, data=data)
    x, y = next(iter(data.train.epoch(1)))

    def step() -> None:
        trainer.step(x, y, 1e-3)

    step_block(step, 1.0)  # warm-up: allocator, first calls
    # The script runs its own monitors: the record's would be one more thread in every block.
    with record.recording(record.new_run_dir("bench-monitor"), "bench_monitor",
                          {"args": vars(args), "monitor": {"enabled": False}}) as rec:  # fmt: skip
        rec["yardstick_gflops"] = yardstick(where, "fp32") / 1e9
        times: dict[str, list[float]] = {s: [] for s in settings}
        round_means: dict[str, list[float]] = {s: [] for s in settings}  # paired by round: drift cancels
        costs: dict[str, list[float]] = {s: [] for s in settings[1:]}
        rng = random.Random(0)
        for r in range(args.rounds):
            order = settings[:]
            rng.shuffle(order)
            for setting in order:
                monitor = None
                if setting != "off":
                    monitor = ResourceMonitor(intervals[settings.index(setting) - 1]).start()
                block = step_block(step, args.block_s)
                times[setting] += block
                round_means[setting].append(statistics.fmean(block))
                if monitor is not None:
                    monitor.stop()
                    costs[setting].append(monitor.summary()["sampler_cpu_fraction"])
            print(f"round {r + 1}/{args.rounds} done", flush=True)
        rows = []
        base_mean, base_p50 = statistics.fmean(times["off"]), stats.median(times["off"])
        for setting in settings:
            mean, p50 = statistics.fmean(times[setting]), stats.median(times[setting])
            rows.append({
                "monitor": setting, "steps": len(times[setting]), "mean_us": mean * 1e6, "p50_us": p50 * 1e6,
                "mean_vs_off": mean / base_mean, "p50_vs_off": p50 / base_p50,
                "paired_vs_off": stats.median([m / o for m, o in zip(round_means[setting], round_means["off"],
                                                                          strict=True)]),
                "sampler_cpu_fraction": statistics.fmean(costs[setting]) if setting in costs else None,
            })  # fmt: skip
        fastest = min(intervals)
        fast_row = rows[settings.index(f"every {fastest:g} s")]
        default = max(intervals)
        extrapolated = (fast_row["mean_vs_off"] - 1) * fastest / default
        rec.update({"rows": rows, "yardstick_gflops_end": yardstick(where, "fp32") / 1e9,
                    "extrapolated_cost_at_default": extrapolated})  # fmt: skip
        header = ["Monitor", "Steps", "Mean step", "p50 step", "Mean vs off", "p50 vs off",
                  "Median of per-round ratios", "Sampler CPU (of one core)"]  # fmt: skip
        lines = [[r["monitor"], f"{r['steps']:,}", f"{r['mean_us']:.0f} µs", f"{r['p50_us']:.0f} µs",
                  f"{r['mean_vs_off']:.3f}×", f"{r['p50_vs_off']:.3f}×", f"{r['paired_vs_off']:.3f}×",
                  f"{r['sampler_cpu_fraction']:.3%}" if r["sampler_cpu_fraction"] is not None else "—"]
                 for r in rows]  # fmt: skip
        md, _ = study.write(
            args.study, header, lines, results_dir=args.results_dir, title="What the resource monitor costs a step",
            machine=study.machine_of(rec.data),
            notes=[f"Per sample, from every {fastest:g} s: a {fast_row['mean_vs_off'] - 1:+.2%} mean step time, so "
                   f"{extrapolated:+.3%} at every {default:g} s.",
                   f"fp32 matmul yardstick: {rec['yardstick_gflops']:.0f} GFLOP/s at the start, "
                   f"{rec['yardstick_gflops_end']:.0f} at the end."],
        )  # fmt: skip
        print("\n" + md.read_text() + f"\nresult: {rec.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
