"""Benchmark every model family on data it is made for: train briefly, export ONNX with parity against the trained
model, bench eager / inductor / ONNX Runtime, and profile one training step, each in a fresh process.

    python scripts/bench_families.py [--families convnext,mlp,...] [--epochs N]

The pairs (one row each; the input shape and outputs come from the data source, never from the script):
- convnext: the quick preset's ConvNeXt on synthetic 64 px images, 200 classes;
- timm: resnet18 on the same data;
- torchvision: efficientnet_b0 at 224 px with 1,000 classes (the reference's model report article);
- mlp: the reference's 4-32-16-4 MLP on matrix exponentials (regression);
- lenet5: LeNet5 on scikit-learn's digits at 28 px.

Prints one markdown table (parameters, input, trained figure, export parity, latency at batch 1 and the data's batch,
profile step time) and writes result.json (kind: bench_families) under artifacts/runs/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from speedlab import record, study
from speedlab.study import Row

FAST = ["bench.min_time_s=0.5", "bench.warmup_min_s=0.1"]
PAIRS = {
    "convnext": ["+preset=quick"],
    "timm": ["model=timm", "model.timm_name=resnet18", "data=synthetic", "data.resolution=64", "data.train_size=6400",
             "data.val_size=1000"],
    "torchvision": ["model=torchvision", "model.torchvision_name=efficientnet_b0", "data=synthetic",
                    "data.num_classes=1000", "data.train_size=512", "data.val_size=256"],
    "mlp": ["model=mlp", "data=matrix_exp"],
    "lenet5": ["model=lenet5", "data=digits"],
}  # fmt: skip
# What the commands that train add (their own sections): the pair's recipe, kept short where it is long: the point is
# parity and speed, not convergence.
TRAIN = {"convnext": ["trainer.max_steps=50"], "timm": ["trainer.batch_size=64", "trainer.max_steps=20",
         "trainer.epochs=1"], "torchvision": ["trainer.batch_size=8", "trainer.max_steps=5", "trainer.epochs=1"],
         "mlp": ["+exp=mlp_matexp"], "lenet5": []}  # fmt: skip
BATCH = {"convnext": 64, "timm": 64, "torchvision": 8, "mlp": 10_000, "lenet5": 32}


def speedlab(command: str, overrides: list[str], run_dir: Path) -> dict:
    """One run through the study runner; its result.json with the process's wall time (a failed run raises)."""
    outcome = study.run_one(Row(command, command, tuple(overrides)), run_dir)
    if outcome.result is None:
        raise SystemExit(f"{command} left no result.json in {run_dir}: {' '.join(outcome.stderr_tail)}")
    return {**outcome.result, "_wall_s": outcome.wall_s}


def measure(family: str, bench_dir: Path) -> dict:
    pair, batch = PAIRS[family], BATCH[family]
    trained = speedlab("train", [*pair, *TRAIN[family]], record.job_dir(bench_dir, f"{family}-train"))
    checkpoint = f"weights={trained['checkpoint']}"
    export_dir = record.job_dir(bench_dir, f"{family}-export")
    exported = speedlab("export", [*pair, checkpoint, "export.formats=[onnx]"], export_dir)
    benched = speedlab("bench", [*pair, checkpoint, f"bench.export_dir={export_dir}", f"bench.batch_sizes=[1,{batch}]",
                                 "bench.backends=[eager,inductor,onnxruntime]", *FAST],
                       record.job_dir(bench_dir, f"{family}-bench"))  # fmt: skip
    profiled = speedlab("profile", [*pair, *TRAIN[family], "profile.steps=3", f"trainer.batch_size={batch}"],
                        record.job_dir(bench_dir, f"{family}-profile"))  # fmt: skip
    onnx = exported["artifacts"][0]
    rows = {(r["backend"], r["batch_size"]): r for r in benched["rows"] if r["status"] == "ok"}
    step_ms = sum(sum(r["self_ms"] for r in profiled["tables"][p]) for p in ("forward", "backward"))
    metric = trained["metric"]
    return {
        "family": family, "params": trained["params"], "input_shape": trained["data"]["spec"]["input_shape"],
        "data": trained["data"]["name"], "metric": metric, "val": trained.get(f"final_{metric}"),
        "train_epochs": len(trained["epochs"]), "train_wall_s": round(trained["_wall_s"], 1),
        "parity_max_abs_error": onnx["max_abs_error"], "parity_status": onnx["status"],
        "val_agreement": onnx.get("val_top1_agreement"), "batch": batch,
        "latency_ms": {f"{b}@{n}": rows[(b, n)]["p50_ms"] for b, n in rows},
        "profile_step_ms": round(step_ms, 3), "statuses": [trained["status"], exported["status"], benched["status"],
                                                           profiled["status"]],
    }  # fmt: skip


HEADER = ["Family", "Data, input", "Params", "Trained", "ONNX max abs error", "eager / inductor / ORT, batch 1",
          "eager / inductor / ORT, batch N", "Profiled step"]  # fmt: skip


def table(rows: list[dict]) -> list[list[str]]:
    lines = []
    for r in rows:
        val = f"{r['val']:.2f} % top-1" if r["metric"] == "val_acc" else f"MSE {r['val']:.4f}"

        def lat(n: int, r: dict = r) -> str:
            return " / ".join(f"{r['latency_ms'].get(f'{b}@{n}', float('nan')):.3f}"
                              for b in ("eager", "inductor", "onnxruntime")) + " ms"  # fmt: skip

        shape = "x".join(map(str, r["input_shape"]))
        lines.append([r["family"], f"{r['data']}, {shape}", f"{r['params']:,}", f"{val} ({r['train_epochs']} ep.)",
                      f"{r['parity_max_abs_error']:.1e}", lat(1), f"{lat(r['batch'])} (N={r['batch']})",
                      f"{r['profile_step_ms']:.2f} ms"])  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default=",".join(PAIRS))
    parser.add_argument("--study", default="families", help="docs/results/<study>.md and .csv")
    parser.add_argument("--results-dir", type=Path, default=study.RESULTS_DIR, help="where the study's table goes")
    args = parser.parse_args(argv)
    bench_dir = record.new_run_dir("bench_families")
    with record.recording(
        bench_dir, "bench_families", {"args": {**vars(args), "results_dir": str(args.results_dir)}}
    ) as rec:
        rec["rows"] = []
        for family in args.families.split(","):
            print(f"{family} ...", flush=True)
            rec["rows"] = [*rec["rows"], measure(family, bench_dir)]
            rec.save()
    md, _ = study.write(args.study, HEADER, table(rec["rows"]), title="Every model family through every command",
                        machine=study.machine_of(rec.data), results_dir=args.results_dir,
                        notes=[f"Command: `python scripts/bench_families.py --families {args.families}`"])  # fmt: skip
    print("\n" + md.read_text() + f"\nresult: {rec.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
