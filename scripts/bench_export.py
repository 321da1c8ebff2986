"""Benchmark export: time, file size and parity of ONNX fp32 and INT8 per activation and exporter, on this machine.

    python scripts/bench_export.py [--activations gelu,fastswish_triton] [--exporters dynamo,torchscript]
                                   [--repeats 3] [--trained] [-- extra overrides...]

Runs `python -m speedlab export +preset=quick model.activation=A export.onnx_exporter=E` in fresh processes,
`--repeats` times, interleaved, and reports per artifact the median export time, the file size and the parity figures
(the same every repeat: the model and the fixed batch are seeded). With `--trained`, each activation's model is first
trained for the quick preset's one epoch and the checkpoint is exported, adding val accuracy and agreement over the
whole val split. TensorRT is left out (`export.formats=[onnx,int8]`): it needs a GPU. Writes result.json
(kind: bench_export) under artifacts/runs/.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from speedlab import record

ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}


def speedlab(command: str, overrides: list[str], run_dir: Path) -> dict:
    cmd = [sys.executable, "-m", "speedlab", command, "+preset=quick", *overrides, f"hydra.run.dir={run_dir}"]
    subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, env=ENV)
    return json.loads(record.result_path(run_dir).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--activations", default="gelu,fastswish_triton")
    parser.add_argument("--exporters", default="dynamo,torchscript")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trained", action="store_true", help="export a checkpoint trained for one quick epoch")
    parser.add_argument("extra", nargs="*", help="overrides for every export (after --)")
    args = parser.parse_args()
    acts, exporters = args.activations.split(","), args.exporters.split(",")

    bench_dir = record.new_run_dir("bench_export")
    with record.recording(bench_dir, "bench_export", {"args": vars(args)}) as rec:
        checkpoints = {}
        if args.trained:
            for act in acts:
                run_dir = record.job_dir(bench_dir, f"train-{act}")
                speedlab("train", [f"model.activation={act}"], run_dir)
                checkpoints[act] = run_dir
                print(f"trained {act}: {run_dir}", flush=True)
        runs: dict[tuple[str, str], list[dict]] = {(a, e): [] for a in acts for e in exporters}
        for i in range(args.repeats):
            for act, exporter in runs:
                overrides = [
                    f"model.activation={act}",
                    f"export.onnx_exporter={exporter}",
                    "export.formats=[onnx,int8]",
                ]
                if act in checkpoints:
                    overrides.append(f"weights={checkpoints[act]}")
                result = speedlab(
                    "export", [*overrides, *args.extra], record.job_dir(bench_dir, f"{act}-{exporter}-{i}")
                )
                runs[(act, exporter)].append(result)
                times = ", ".join(f"{a['precision']} {a['export_time_s'] or 0:.2f} s" for a in result["artifacts"])
                print(f"repeat {i + 1}/{args.repeats} {act} {exporter}: {result['status']}; {times}", flush=True)
        rows = [_row(act, exporter, results) for (act, exporter), results in runs.items()]
        rows = [r for pair in rows for r in pair]
        rec["rows"] = rows

    env = rec["env"]
    first = next(iter(runs.values()))[0]
    print(
        f"\nExport, quick ConvNeXt ({first['params']:,} parameters, {first['input_shape'][1:]} input), "
        f"{'trained one epoch' if args.trained else 'fresh initialisation'}; parity on {first['fixed_batch']['images']}"
        f" val images; median export time of {args.repeats}; {env['cpu']['model']}, {env['cpu']['affinity']} cores, "
        f"torch {env['torch']}, onnxruntime {env['onnxruntime']}\n"
    )
    print(_table(rows, args.trained))
    print(f"\nresult: {rec.path}")


def _row(act: str, exporter: str, results: list[dict]) -> list[dict]:
    out = []
    for precision in ("fp32", "int8"):
        entries = [next(a for a in r["artifacts"] if a["precision"] == precision) for r in results]
        times = [e["export_time_s"] for e in entries if e["export_time_s"] is not None]
        entry = entries[0]
        out.append({
            "activation": act, "exporter": exporter, "precision": precision, "status": entry["status"],
            "reason": entry["reason"], "export_time_s": statistics.median(times) if times else None,
            "export_times_s": [e["export_time_s"] for e in entries], "size_bytes": entry["size_bytes"],
            **{k: entry.get(k) for k in ("max_abs_error", "max_rel_error", "cosine", "top1_agreement", "val_acc",
                                          "val_top1_agreement")},
        })  # fmt: skip
    return out


def _table(rows: list[dict], trained: bool) -> str:
    head = "| Activation | Exporter | Artifact | Status | Export time | Size | Max abs error | Cosine | Top-1 agree |"
    sep = "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"
    if trained:
        head, sep = head + " Val top-1 | Val agree |", sep + " ---: | ---: |"
    lines = [head, sep]
    for r in rows:
        if r["export_time_s"] is None:
            lines.append(f"| {r['activation']} | {r['exporter']} | {r['precision']} | {r['status']}: {r['reason']} |")
            continue
        line = (
            f"| {r['activation']} | {r['exporter']} | ONNX {r['precision']} | {r['status']} "
            f"| {r['export_time_s']:.2f} s | {r['size_bytes'] / 2**20:.2f} MiB | {r['max_abs_error']:.1e} "
            f"| {r['cosine']:.6f} | {r['top1_agreement']:.1%} |"
        )
        if trained:
            line += f" {r['val_acc']:.2f} % | {r['val_top1_agreement']:.1%} |"
        lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    main()
