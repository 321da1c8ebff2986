"""Benchmark export: time, file size and parity of ONNX fp32 and INT8 per activation and exporter, on this machine.

    python scripts/bench_export.py [--activations gelu,fastswish_triton] [--exporters dynamo,torchscript]
                                   [--repeats 3] [--trained] [-- extra overrides...]

Runs `python -m speedlab export +preset=quick model.activation=A export.onnx_exporter=E` in fresh processes,
`--repeats` times, interleaved, and reports per artifact the median export time, the file size and the parity figures
(the same every repeat: the model and the fixed batch are seeded). With `--trained`, each activation's model is first
trained for the quick preset's one epoch and the checkpoint is exported, adding val accuracy and agreement over the
whole val split. TensorRT is left out (`export.formats=[onnx,int8]`): it needs a GPU. Runs go through
speedlab.study; writes docs/results/<study>.md and .csv (`--study`, default export) and result.json (kind:
bench_export) under artifacts/runs/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from speedlab import record, stats, study  # noqa: E402
from speedlab.study import Row  # noqa: E402

HEADER = ["Activation", "Exporter", "Artifact", "Status", "Export time", "Size", "Max abs error", "Cosine",
          "Top-1 agree"]  # fmt: skip
TRAINED_HEADER = [*HEADER, "Val top-1", "Val agree"]


def rows_for(acts: list[str], exporters: list[str], checkpoints: dict[str, Path], extra: list[str]) -> list[Row]:
    """One export row per activation x exporter (the trained checkpoint's when there is one)."""
    return [Row(f"{act} {exporter}", "export", ("+preset=quick", f"model.activation={act}",
                                                f"export.onnx_exporter={exporter}", "export.formats=[onnx,int8]",
                                                *([f"weights={checkpoints[act]}"] if act in checkpoints else []),
                                                *extra))
            for act in acts for exporter in exporters]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--activations", default="gelu,fastswish_triton")
    parser.add_argument("--exporters", default="dynamo,torchscript")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trained", action="store_true", help="export a checkpoint trained for one quick epoch")
    parser.add_argument("--study", default="export", help="docs/results/<study>.md and .csv")
    parser.add_argument("--results-dir", type=Path, default=study.RESULTS_DIR, help="where the study's table goes")
    parser.add_argument("extra", nargs="*", help="overrides for every export and training run (after --)")
    args = parser.parse_args(argv)
    acts, exporters = args.activations.split(","), args.exporters.split(",")

    bench_dir = record.new_run_dir("bench_export")
    with record.recording(
        bench_dir, "bench_export", {"args": {**vars(args), "results_dir": str(args.results_dir)}}
    ) as rec:
        checkpoints = {}
        if args.trained:
            train_rows = [Row(f"train {act}", "train", ("+preset=quick", f"model.activation={act}", *args.extra))
                          for act in acts]  # fmt: skip
            for outcome in study.run(train_rows, out_dir=bench_dir / "train"):
                checkpoints[outcome.row.label.split(" ", 1)[1]] = outcome.run_dir
        rows = rows_for(acts, exporters, checkpoints, args.extra)
        outcomes = study.run(rows, out_dir=bench_dir, repeats=args.repeats)
        entries = [entry for row in rows for entry in _entries(row, study.results(outcomes, row))]
        rec["rows"] = entries
    first = next((o.result for o in outcomes if o.ok), None)
    if first is None:
        print("every export failed; see the run directories under " + str(bench_dir), file=sys.stderr)
        return 1
    title = (f"Export of the quick ConvNeXt ({first['params']:,} parameters, "
             f"{'trained one epoch' if args.trained else 'fresh initialisation'}); parity on "
             f"{first['fixed_batch']['samples']} val images; median export time of {args.repeats}")  # fmt: skip
    lines = [_line(e, args.trained) for e in entries]
    command = (f"python scripts/bench_export.py --activations {args.activations} --exporters {args.exporters} "
               f"--repeats {args.repeats}{' --trained' if args.trained else ''}")  # fmt: skip
    md, _ = study.write(args.study, TRAINED_HEADER if args.trained else HEADER, lines, title=title,
                        machine=study.machine(outcomes), results_dir=args.results_dir,
                        notes=[f"Command: `{command}`"])  # fmt: skip
    print("\n" + md.read_text())
    print(f"result: {rec.path}\ntable: {md}")
    return 0 if all(o.ok for o in outcomes) else 1


def _entries(row: Row, results: list[dict]) -> list[dict]:
    """Per precision: the median export time over the repeats, and the first repeat's size and parity figures (the
    same every repeat: the model and the fixed batch are seeded)."""
    out = []
    activation, exporter = row.label.split(" ")
    for precision in ("fp32", "int8"):
        found = [next(a for a in r["artifacts"] if a["precision"] == precision) for r in results]
        if not found:
            out.append({"activation": activation, "exporter": exporter, "precision": precision, "status": "failed",
                        "reason": "no repeat finished", "export_time_s": None})  # fmt: skip
            continue
        times = [e["export_time_s"] for e in found if e["export_time_s"] is not None]
        entry = found[0]
        out.append({
            "activation": activation, "exporter": exporter, "precision": precision, "status": entry["status"],
            "reason": entry["reason"], "export_time_s": stats.median(times) if times else None,
            "export_times_s": [e["export_time_s"] for e in found], "size_bytes": entry["size_bytes"],
            **{k: entry.get(k) for k in ("max_abs_error", "max_rel_error", "cosine", "top1_agreement", "val_acc",
                                          "val_top1_agreement")},
        })  # fmt: skip
    return out


def _line(e: dict, trained: bool) -> list[str]:
    if e["export_time_s"] is None:
        return [e["activation"], e["exporter"], f"ONNX {e['precision']}", f"{e['status']}: {e['reason']}",
                *[""] * (len(HEADER) - 4 + 2 * trained)]  # fmt: skip
    line = [e["activation"], e["exporter"], f"ONNX {e['precision']}", e["status"], f"{e['export_time_s']:.2f} s",
            f"{e['size_bytes'] / 2**20:.2f} MiB", f"{e['max_abs_error']:.1e}", f"{e['cosine']:.6f}",
            f"{e['top1_agreement']:.1%}" if e["top1_agreement"] is not None else "–"]  # fmt: skip
    if trained:
        line += [f"{e['val_acc']:.2f} %" if e.get("val_acc") is not None else "–",
                 f"{e['val_top1_agreement']:.1%}" if e.get("val_top1_agreement") is not None else "–"]  # fmt: skip
    return line


if __name__ == "__main__":
    sys.exit(main())
