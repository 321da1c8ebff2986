"""The parity study of "Needle vs PyTorch", with speedlab's own models (`make parity-study`).

That write-up ran two implementations of one model on identical mini-batches: with the initial weights copied and
dropout aligned the losses matched to 1e-5; with dropout aligned but the weights not copied they differed by ~0.3;
with the weights copied but dropout not aligned they drifted a little. The cause was a weight-initialisation default.

Here the two "implementations" are one ConvNeXt with two init schemes (A: kaiming or trunc_normal; B: torch's
default), with stochastic depth (drop path 0.2) as the stochastic layer, on scikit-learn's digits. For each pair the
three runs: weights copied + random draws aligned, aligned only, copied only. One fresh process per run
(speedlab.study); writes the summary and the per-epoch tables to docs/results/<study>.md (`--study`, default
parity-study) and the summary to .csv.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from speedlab import record, study  # noqa: E402
from speedlab.study import Row  # noqa: E402
from speedlab.tables import markdown  # noqa: E402

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


def rows_for(epochs: int, extra: list[str]) -> list[Row]:
    """One parity row per (pair, run): the shared overrides and the run's options, then each side's init."""
    return [Row(f"{pair}: {run}", "parity", (*SHARED, f"trainer.epochs={epochs}", *options, *extra,
                                             "--a", f"model.init={init_a}", "--b", "model.init=torch_default"))
            for pair, init_a in PAIRS.items() for run, options in RUNS.items()]  # fmt: skip


HEADER = ["Pair", "Run", "Verdict", "First step over tolerance", "Max loss difference", "Last epoch: loss A / B",
          "Final weights rel. diff", "Val top-1 A / B"]  # fmt: skip


def summary(results: dict[tuple[str, str], dict]) -> list[list[str]]:
    lines = []
    for (pair, run), r in results.items():
        last = r["epochs"][-1]
        ev = r["evaluation"] or {}
        acc = " / ".join(f"{ev[s]['val_acc']:.1f} %" for s in "AB") if ev else "n/a"
        lines.append([pair, run, r["verdict"], str(r["first_step_over_tolerance"] or "—"),
                      f"{r['max_abs_difference']:.3g}", f"{last['loss_a']:.4f} / {last['loss_b']:.4f}",
                      f"{r['final_weights']['relative']:.3g}", acc])  # fmt: skip
    return lines


def epoch_tables(results: dict[tuple[str, str], dict], pair: str) -> str:
    """The reference's shape: loss A, loss B and their difference per epoch, one column group per run."""
    runs = [(run, r) for (p, run), r in results.items() if p == pair]
    header = ["Epoch", *(f"{run}: {col}" for run, _ in runs for col in ("A", "B", "diff"))]
    lines = [[str(i + 1), *(cell for _, r in runs for cell in (f"{r['epochs'][i]['loss_a']:.6f}",
              f"{r['epochs'][i]['loss_b']:.6f}", f"{r['epochs'][i]['difference']:.2g}"))]
             for i in range(len(runs[0][1]["epochs"]))]  # fmt: skip
    return markdown(header, lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--study", default="parity-study", help="docs/results/<study>.md and .csv")
    parser.add_argument("--results-dir", type=Path, default=study.RESULTS_DIR, help="where the study's table goes")
    parser.add_argument("extra", nargs="*", help="shared overrides for every run (after --)")
    args = parser.parse_args(argv)
    rows = rows_for(args.epochs, args.extra)
    outcomes = study.run(rows, out_dir=record.new_run_dir("parity-study"))
    results = {}
    for row in rows:
        found = study.results(outcomes, row)
        if found:
            pair, run = row.label.split(": ", 1)
            results[pair, run] = found[0]
    if not results:
        print("every parity run failed", file=sys.stderr)
        return 1
    notes = [f"Shared overrides: `{' '.join([*SHARED, *args.extra])} trainer.epochs={args.epochs}`", ""]
    for pair in PAIRS:
        if any(p == pair for p, _ in results):
            notes += [f"## {pair}: mean training loss per epoch", "", epoch_tables(results, pair), ""]
    md, _ = study.write(args.study, HEADER, summary(results), title="Parity study", machine=study.machine(outcomes),
                        notes=notes, results_dir=args.results_dir)  # fmt: skip
    print("\n" + md.read_text() + f"\nreport: {md}")
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
