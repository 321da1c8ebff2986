"""The headline question in one command (`make demo`): what does the best configuration for this machine buy over
Vanilla, and did it cost accuracy?

    python scripts/demo.py [--dry-run] [-- extra overrides for both runs...]

Trains Vanilla and the machine's best configuration on the quick preset, each in its own fresh process, with the same
batch size and learning rate: on a GPU `tc_amp` (torch.compile + bf16/fp16 autocast); on a CPU `cpu_fast` (compile,
bf16 autocast, channels_last, fused AdamW, the fast depthwise layer) at batch 256 with the learning rate scaled up by
the square root of the batch (2e-3): the CPU configuration measured fastest in docs/results.md (2.05x Vanilla on a
2-core Intel Xeon with AMX, 1.80x on an AMD EPYC without). Then prints the speed-up, the accuracy difference, the CPU
or GPU model and each run's share of the matmul yardstick, and writes the report of the two runs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from speedlab import record  # noqa: E402

CPU_BEST = ("cpu_fast", ["trainer.batch_size=256", "optim.lr=2e-3"])
GPU_BEST = ("tc_amp", [])


def plan() -> tuple[str, list[str]]:
    """The best configuration measured for this kind of machine, and the overrides both runs share."""
    return GPU_BEST if torch.cuda.is_available() else CPU_BEST


def train(exp: str, shared: list[str], run_dir: Path) -> dict:
    argv = [sys.executable, "-m", "speedlab", "train", f"+exp={exp}", "+preset=quick", *shared,
            f"hydra.run.dir={run_dir}"]  # fmt: skip
    print(f"\n$ {' '.join(argv[1:])}", flush=True)
    done = subprocess.run(argv, cwd=REPO)
    result = record.result_path(run_dir)
    if done.returncode != 0 or not result.is_file():
        raise SystemExit(f"demo: the {exp} run failed (exit {done.returncode}); see {run_dir}/speedlab.log")
    return json.loads(result.read_text())


def headline(vanilla: dict, best: dict, exp: str) -> str:
    speedup = vanilla["mean_epoch_time_s"] / best["mean_epoch_time_s"]
    delta = best["final_val_acc"] - vanilla["final_val_acc"]
    cpu = vanilla["env"]["cpu"]["model"]
    gpu = (vanilla["env"].get("gpu") or {}).get("name") if vanilla["env"].get("gpu") else None
    where = f"{gpu} (host CPU {cpu})" if gpu else cpu

    def share(r: dict) -> str:
        return f"{r['efficiency']:.1%} of its {r.get('yardstick_precision')} matmul yardstick" if r.get(
            "efficiency") else "yardstick n/a"  # fmt: skip

    verdict = "faster" if speedup >= 1 else "SLOWER: this machine is not the one the configuration was measured on"
    return "\n".join([
        f"\n== speedlab demo on {where} ==",
        f"Vanilla:  {vanilla['mean_epoch_time_s']:.2f} s per epoch, val top-1 {vanilla['final_val_acc']:.2f} % "
        f"({share(vanilla)})",
        f"{exp}: {best['mean_epoch_time_s']:.2f} s per epoch, val top-1 {best['final_val_acc']:.2f} % ({share(best)})",
        f"=> {exp} is {speedup:.2f}x Vanilla ({verdict}), accuracy {delta:+.2f} points",
    ])  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    parser.add_argument("extra", nargs="*", help="overrides for both runs (after --)")
    args = parser.parse_args()
    exp, shared = plan()
    shared = [*shared, *args.extra]
    print(f"demo: Vanilla against {exp} on the quick preset ({' '.join(shared) or 'its defaults'})")
    if args.dry_run:
        return 0
    root = record.artifacts_root() / "demo" / time.strftime("%Y%m%d-%H%M%S")
    vanilla = train("vanilla", shared, root / "vanilla")
    best = train(exp, shared, root / exp)
    print(headline(vanilla, best, exp))
    subprocess.run([sys.executable, "-m", "speedlab", "report", str(root), "--out", str(root / "report")], cwd=REPO,
                   check=False)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
