"""The reference's parity study with speedlab's own models (`make parity-study`).

Reference 000 ran two implementations of one model on identical mini-batches: with the initial weights copied and
dropout aligned the losses matched to 1e-5; with dropout aligned but the weights not copied they differed by ~0.3;
with the weights copied but dropout not aligned they drifted a little. The cause was a weight-initialisation default.

Here the two "implementations" are one ConvNeXt with two init schemes (A: kaiming or trunc_normal; B: torch's
default), with stochastic depth (drop path 0.2) as the stochastic layer, on scikit-learn's digits. For each pair the
three runs: weights copied + random draws aligned, aligned only, copied only. One fresh process per run; prints the
summary and the per-epoch tables and writes them to the study directory's report.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from speedlab import record
from speedlab.fsutil import atomic_write_text

SHARED = [
    "+preset=quick", "data=digits", "data.resolution=32", "model.depths=[1,1,1,1]", "model.dims=[16,32,64,128]",
    "model.drop_path=0.2", "optim.schedule=constant",
]  # fmt: skip
RUNS = {
    "weights copied + draws aligned": ["parity.copy_weights=true", "parity.align_rng=true"],
    "draws aligned only": ["parity.copy_weights=false", "parity.align_rng=true"],
    "weights copied only": ["parity.copy_weights=true", "parity.align_rng=false"],
}
PAIRS = {"kaiming vs torch_default": "kaiming", "trunc_normal vs torch_default": "trunc_normal"}


def run_one(run_dir: Path, epochs: int, options: list[str], init_a: str) -> dict:
    cmd = [sys.executable, "-m", "speedlab", "parity", *SHARED, f"trainer.epochs={epochs}", *options,
           f"hydra.run.dir={run_dir}", "--a", f"model.init={init_a}", "--b", "model.init=torch_default"]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(record.result_path(run_dir).read_text())


def summary(results: dict[tuple[str, str], dict]) -> str:
    lines = [
        "| Pair | Run | Verdict | First step over tolerance | Max loss difference | Last epoch: loss A / B | "
        "Final weights rel. diff | Val top-1 A / B |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for (pair, run), r in results.items():
        last = r["epochs"][-1]
        ev = r["evaluation"] or {}
        acc = " / ".join(f"{ev[s]['val_acc']:.1f} %" for s in "AB") if ev else "n/a"
        lines.append(
            f"| {pair} | {run} | {r['verdict']} | {r['first_step_over_tolerance'] or '—'} | "
            f"{r['max_abs_difference']:.3g} | {last['loss_a']:.4f} / {last['loss_b']:.4f} | "
            f"{r['final_weights']['relative']:.3g} | {acc} |"
        )
    return "\n".join(lines)


def epoch_tables(results: dict[tuple[str, str], dict], pair: str) -> str:
    """The reference's shape: loss A, loss B and their difference per epoch, one column group per run."""
    runs = [(run, r) for (p, run), r in results.items() if p == pair]
    head = "| Epoch | " + " | ".join(f"{run}: A | B | diff" for run, _ in runs) + " |"
    lines = [head, "|---:|" + "---:|---:|---:|" * len(runs)]
    for i in range(len(runs[0][1]["epochs"])):
        cells = []
        for _, r in runs:
            e = r["epochs"][i]
            cells.append(f"{e['loss_a']:.6f} | {e['loss_b']:.6f} | {e['difference']:.2g}")
        lines.append(f"| {i + 1} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    study_dir = record.new_run_dir("parity-study")
    results = {}
    for pair, init_a in PAIRS.items():
        for run, options in RUNS.items():
            slug = f"{init_a}-{run.split()[0]}-{run.split()[-1]}"
            print(f"{pair}: {run} ...", flush=True)
            results[pair, run] = run_one(record.job_dir(study_dir, slug), args.epochs, options, init_a)
    text = ["# Parity study", "", f"Shared overrides: `{' '.join(SHARED)} trainer.epochs={args.epochs}`", "",
            summary(results), ""]  # fmt: skip
    for pair in PAIRS:
        text += [f"## {pair}: mean training loss per epoch", "", epoch_tables(results, pair), ""]
    report = "\n".join(text)
    atomic_write_text(study_dir / "report.md", report)
    print("\n" + report + f"\nreport: {study_dir / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
