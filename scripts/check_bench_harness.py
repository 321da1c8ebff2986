"""Check speedlab's timing harness against `torch.utils.benchmark.Timer` on the same callable.

    python scripts/check_bench_harness.py [--rounds 5] [--min-time 2] [-- overrides...]

For the quick preset's eager model at each `bench.batch_sizes`, alternates the harness (`speedlab.timing`) and
`Timer.blocked_autorange` for `--rounds` rounds, so that drift on a shared machine hits both alike, and compares the
median over rounds of the harness's p50 with the median over rounds of Timer's median. Passes when they agree within
5 %. Also reports the coefficient of variation of the harness's p50 across the rounds. Writes the table to
docs/results/bench-harness.md and .csv; exits 1 on a failure.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from torch.utils import benchmark

from speedlab import cli, models, record, stats, study, timing
from speedlab.bench import backends
from speedlab.bench.backends import BenchSetup
from speedlab.data.build import describe

TOLERANCE = 0.05


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=2.0, help="seconds per measurement, for both timers")
    parser.add_argument("--study", default="bench-harness", help="docs/results/<study>.md and .csv")
    parser.add_argument("--results-dir", type=Path, default=study.RESULTS_DIR, help="where the study's table goes")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = cli.compose("bench", ["+preset=quick", *args.overrides])
    device = torch.device("cpu")
    torch.manual_seed(cfg.seed)
    spec = describe(cfg.data)
    model = models.build(cfg.model, spec).eval()
    setup = BenchSetup.for_job(model, cfg, device, spec, work_dir=None)  # eager makes no files
    eager = backends.create("eager")
    harness_cfg = timing.TimingCfg(warmup_iters=5, warmup_min_s=0.2, min_iters=20, min_time_s=args.min_time)
    failed, rows = False, []
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.rounds} rounds of {args.min_time} s")
    for batch_size in cfg.bench.batch_sizes:
        run = eager.prepare(setup, batch_size, "fp32").run
        timer = benchmark.Timer(stmt="run()", globals={"run": run}, num_threads=torch.get_num_threads())
        ours, theirs = [], []
        for _ in range(args.rounds):
            ours.append(timing.measure(run, device, harness_cfg).p50_ms)
            theirs.append(timer.blocked_autorange(min_run_time=args.min_time).median * 1e3)
        ours_median, theirs_median = stats.median(ours), stats.median(theirs)
        gap = ours_median / theirs_median - 1
        cv = statistics.stdev(ours) / statistics.mean(ours) if len(ours) > 1 else 0.0
        verdict = "ok" if abs(gap) <= TOLERANCE else "FAIL"
        failed |= verdict == "FAIL"
        rows.append([str(batch_size), f"{ours_median:.4f} ms", f"{theirs_median:.4f} ms", f"{gap:+.1%}", f"{cv:.1%}",
                     verdict])  # fmt: skip
        print(
            f"batch {batch_size}: harness p50 {ours_median:.4f} ms, Timer median {theirs_median:.4f} ms, "
            f"gap {gap:+.2%} (limit ±{TOLERANCE:.0%}) {verdict}; harness p50 CV over rounds {cv:.2%}"
        )
    md, _ = study.write(
        args.study, ["Batch", "Harness p50", "Timer median", "Gap", "Harness p50 CV over rounds", "Within 5 %"], rows,
        title="speedlab's timing harness against torch.utils.benchmark.Timer (eager, fp32)",
        machine=study.machine_of({"env": record.environment()}), results_dir=args.results_dir,
        notes=[f"{args.rounds} interleaved rounds of {args.min_time:g} s per timer and batch size; the median over "
               "rounds of each. Command: `python scripts/check_bench_harness.py "
               f"--rounds {args.rounds} --min-time {args.min_time:g}{''.join(' ' + o for o in args.overrides)}`"],
    )  # fmt: skip
    print("\n" + md.read_text())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
