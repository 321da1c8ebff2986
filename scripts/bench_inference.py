"""Inference studies: named sets of `speedlab bench` runs, each run in a fresh process, one table per study.

    python scripts/bench_inference.py [--studies inductor-levers,batch-one,efficientnet-b0,quick] [-- overrides...]

- inductor-levers: the quick ConvNeXt at batch 1 and 64, eager against Inductor with each inference lever
  (default; freezing; freezing + C++ wrapper; freezing + max-autotune), one run per setting.
- batch-one: the quick ConvNeXt at batch 1, every CPU backend at its best single-image settings (Inductor frozen,
  ONNX Runtime and OpenVINO on one thread), 3 repeats.
- efficientnet-b0: torchvision's EfficientNet-B0 at 224 px, 1,000 classes, batch 1 and 8, every CPU backend
  (AOTInductor included), 3 repeats, and OpenVINO again under its THROUGHPUT hint with 1 and 2 requests in
  flight (the case of "Benchmarking PyTorch on OCI & EfficientNet's Models").
- quick: the quick ConvNeXt with bench's defaults, 5 repeats.
- concurrency: the quick ConvNeXt at batch 1 and 64 with 1, 2 and 4 requests in flight (`bench.concurrency`), for
  eager (its threads split among the requests), ONNX Runtime, and OpenVINO under its LATENCY and THROUGHPUT hints:
  images/s over the wall time and p99 per request; "vs eager" is against eager at the same batch and requests.
- bf16: the quick ConvNeXt at batch 1 and 64 in fp32 and bf16 under `+exp=cpu_infer`: eager with autocast and
  with bf16 weights (`half_weights`), Inductor with bf16 weights, OpenVINO pinned to bf16; each bf16 cell's share is
  of the run's bf16 matmul yardstick.
- cpu-infer: the quick ConvNeXt at batch 1 and 64 under `+exp=cpu_infer`, each backend in a process of its own
  (and eager, ONNX Runtime and OpenVINO also on one thread); "vs eager" is against the faster eager row, eager at
  its own best thread count. The issue's targets: batch 64 >= 70 % of the fp32 yardstick, batch 1 >= 3.8x eager.

Every row of a study's table is one cell: p50, p90, p99 and min latency, images/s, the speed-up over the eager cell
of the same run and batch, and the fraction of that run's fp32 matmul yardstick. Writes
docs/results/inference-<study>.md and .csv (`--results-dir`) and result.json (kind: bench_inference).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from speedlab import record, study  # noqa: E402
from speedlab.study import Row  # noqa: E402

QUICK = "+preset=quick"
CPU_BACKENDS = "bench.backends=[eager,inductor,onnxruntime,openvino]"
ALL_CPU = "bench.backends=[eager,inductor,aotinductor,onnxruntime,openvino]"
INDUCTOR = "bench.backends=[eager,inductor]", "bench.batch_sizes=[1,64]", "bench.repeats=2"
FROZEN = "bench.inductor.freezing=true"
CPU_INFER = "+exp=cpu_infer"
NO_LEVERS = "bench.levers=[]"  # the experiment's levers are the torch backends'; alone, the others would refuse them
ONE_THREAD = ("env", "OMP_NUM_THREADS=1")  # torch's threads are read from it at start-up
CONCURRENT = "bench.concurrency=[1,2,4]"
BF16 = "bench.precisions=[fp32,bf16]"
HALF = "bench.levers=[channels_last,inference_mode,half_weights]"
EFFICIENTNET = ("model=torchvision", "model.torchvision_name=efficientnet_b0", "data=synthetic",
                "data.num_classes=1000", "data.resolution=224")  # fmt: skip
STUDIES: dict[str, tuple[str, list[Row]]] = {
    "inductor-levers": ("Inductor's inference levers, the quick ConvNeXt at batch 1 and 64", [
        Row("bench.inductor.mode=default", "bench", (QUICK, *INDUCTOR)),
        Row("+ freezing", "bench", (QUICK, *INDUCTOR, FROZEN)),
        Row("+ freezing + cpp_wrapper", "bench", (QUICK, *INDUCTOR, FROZEN, "bench.inductor.cpp_wrapper=true")),
        Row("+ freezing + max-autotune", "bench", (QUICK, *INDUCTOR, FROZEN, "bench.inductor.mode=max-autotune")),
    ]),
    "batch-one": ("Batch 1, every CPU backend at its single-image settings, the quick ConvNeXt", [
        Row("one thread for ORT and OpenVINO, Inductor frozen", "bench", (
            QUICK, CPU_BACKENDS, "bench.batch_sizes=[1]", "bench.repeats=3", FROZEN,
            "bench.onnxruntime.intra_op_threads=1", "bench.openvino.threads=1")),
    ]),
    "efficientnet-b0": ("torchvision's EfficientNet-B0, 224 px, 1,000 classes", [
        Row("efficientnet_b0", "bench", (*EFFICIENTNET, "bench.batch_sizes=[1,8]", ALL_CPU, "bench.repeats=3")),
        Row("openvino, THROUGHPUT hint", "bench", (*EFFICIENTNET, "bench.batch_sizes=[1,8]", "bench.repeats=3",
                                                   "bench.backends=[openvino]", "bench.openvino.hint=THROUGHPUT",
                                                   "bench.concurrency=[1,2]")),
    ]),
    "quick": ("The quick ConvNeXt with bench's defaults", [Row("defaults", "bench", (QUICK, "bench.repeats=5"))]),
    "concurrency": ("Requests in flight: images/s and p99 at 1, 2 and 4 concurrent requests, the quick ConvNeXt", [
        Row("eager", "bench", (QUICK, CPU_INFER, "bench.backends=[eager]", CONCURRENT)),
        Row("onnxruntime", "bench", (QUICK, CPU_INFER, "bench.backends=[onnxruntime]", NO_LEVERS, CONCURRENT)),
        Row("openvino, LATENCY hint", "bench", (QUICK, CPU_INFER, "bench.backends=[openvino]", NO_LEVERS,
                                                CONCURRENT)),
        Row("openvino, THROUGHPUT hint", "bench", (QUICK, CPU_INFER, "bench.backends=[openvino]", NO_LEVERS,
                                                   CONCURRENT, "bench.openvino.hint=THROUGHPUT")),
    ]),
    "bf16": ("bf16 against fp32, each backend at its +exp=cpu_infer settings, the quick ConvNeXt", [
        Row("eager, bf16 autocast", "bench", (QUICK, CPU_INFER, "bench.backends=[eager]", BF16)),
        Row("eager, bf16 weights", "bench", (QUICK, CPU_INFER, "bench.backends=[eager]", BF16, HALF)),
        Row("inductor, bf16 weights", "bench", (QUICK, CPU_INFER, "bench.backends=[inductor]", BF16, HALF)),
        Row("openvino", "bench", (QUICK, CPU_INFER, "bench.backends=[openvino]", NO_LEVERS, BF16)),
    ]),
    "cpu-infer": ("Each CPU backend at its best settings (+exp=cpu_infer), one process each, the quick ConvNeXt", [
        Row("eager", "bench", (QUICK, CPU_INFER, "bench.backends=[eager]")),
        Row("eager, 1 thread", "bench", (QUICK, CPU_INFER, "bench.backends=[eager]"), ONE_THREAD),
        Row("eager, no levers", "bench", (QUICK, CPU_INFER, "bench.backends=[eager]", NO_LEVERS)),
        Row("inductor", "bench", (QUICK, CPU_INFER, "bench.backends=[inductor]")),
        Row("inductor, no levers", "bench", (QUICK, CPU_INFER, "bench.backends=[inductor]", NO_LEVERS)),
        Row("aotinductor", "bench", (QUICK, CPU_INFER, "bench.backends=[aotinductor]", NO_LEVERS)),
        Row("onnxruntime", "bench", (QUICK, CPU_INFER, "bench.backends=[onnxruntime]", NO_LEVERS)),
        Row("onnxruntime, 1 thread", "bench", (QUICK, CPU_INFER, "bench.backends=[onnxruntime]", NO_LEVERS,
                                                "bench.onnxruntime.intra_op_threads=1")),
        Row("openvino", "bench", (QUICK, CPU_INFER, "bench.backends=[openvino]", NO_LEVERS)),
        Row("openvino, 1 thread", "bench", (QUICK, CPU_INFER, "bench.backends=[openvino]", NO_LEVERS,
                                             "bench.openvino.threads=1")),
    ]),
}  # fmt: skip
# Studies whose eager cells are in some rows only: "vs eager" is against the study's fastest eager cell at that batch
# size and number of requests in flight (or one request at a time, where eager had no cell with that many).
ISOLATED = {"cpu-infer", "concurrency", "efficientnet-b0", "bf16"}
# Studies that keep several requests in flight: their tables have an "In flight" column.
CONCURRENCY = {"concurrency", "efficientnet-b0"}
HEADER = ["Run", "Backend", "Precision", "Batch", "p50", "p90", "p99", "min", "Images/s", "vs eager",
          "Of fp32 yardstick", "Setup"]  # fmt: skip


def header(flight: bool) -> list[str]:
    return [*HEADER[:4], "In flight", *HEADER[4:]] if flight else HEADER


def _key(r: dict) -> tuple[int, int]:
    return r["batch_size"], r.get("concurrency", 1)


def eager_best(results: list[dict]) -> dict[tuple[int, int], float]:
    """The most images/s of an eager fp32 cell per (batch size, requests in flight) over `results` (one request at
    a time: the lowest p50)."""
    best: dict[tuple[int, int], float] = {}
    for result in results:
        for r in result.get("rows", []):
            if r["backend"] == "eager" and r["status"] == "ok" and r["precision"] == "fp32":
                best[_key(r)] = max(best.get(_key(r), 0.0), r["throughput_per_s"])
    return best


def cells(label: str, result: dict, eager: dict[tuple[int, int], float] | None = None,
          flight: bool = False) -> list[list[str]]:  # fmt: skip
    """One table row per cell of a bench run (speed-ups in images/s against `eager`, default the run's own eager
    cells; one request at a time that is the ratio of p50s); a failed or unsupported cell says why."""
    eager = eager if eager is not None else eager_best([result])
    lines = []
    for r in result["rows"]:
        head = [label, r["backend"], r["precision"], str(r["batch_size"]), *([str(r.get("concurrency", 1))] * flight)]
        if r["status"] != "ok":
            lines.append([*head, f"{r['status']}: {r.get('reason', '')}"[:120], *[""] * (len(HEADER) - 5)])
            continue
        base = eager.get(_key(r)) or eager.get((r["batch_size"], 1))  # else eager serving one request at a time
        lines.append([*head, *(f"{r[k]:.3f} ms" for k in ("p50_ms", "p90_ms", "p99_ms", "min_ms")),
                      f"{r['throughput_per_s']:,.0f}", f"{r['throughput_per_s'] / base:.2f}×" if base else "–",
                      _share(r),
                      f"{r['setup_s']:.1f} s"])  # fmt: skip
    return lines


def _share(r: dict) -> str:
    """The cell's share of the run's yardstick in its own dtype (a bf16 cell: the bf16 matmul's), so marked."""
    if r.get("efficiency") is None:
        return "–"
    return f"{r['efficiency']:.1%}" + ("" if r["precision"] == "fp32" else f" (of {r['precision']}'s)")


def run_study(name: str, extra: list[str], out_dir: Path, results_dir: Path) -> tuple[Path, bool]:
    title, rows = STUDIES[name]
    rows = [Row(r.label, r.command, (*r.overrides, *extra), r.prefix) for r in STUDIES[name][1]]
    outcomes = study.run(rows, out_dir=out_dir / name)
    eager = eager_best([o.result for o in outcomes if o.result]) if name in ISOLATED else None
    flight = name in CONCURRENCY
    lines, notes = [], []
    for outcome in outcomes:
        if outcome.result is None:
            failed = f"failed: {' '.join(outcome.stderr_tail)[-200:]}"
            lines.append([outcome.row.label, failed, *[""] * (len(header(flight)) - 2)])
            continue
        lines += cells(outcome.row.label, outcome.result, eager, flight)
        yards = outcome.result.get("yardstick_flops_per_s") or {}
        yard = yards.get("fp32")
        mflops = outcome.result.get("flops_per_image", 0) / 1e6
        command = " ".join((*outcome.row.prefix, "python -m speedlab bench", *outcome.row.overrides))
        notes.append(f"- {outcome.row.label}: `{command}`; "
                     f"{outcome.result.get('params', 0):,} parameters, {mflops:.1f} MFLOPs per image; fp32 matmul "
                     "yardstick "
                     + (f"{yard / 1e9:.0f} GFLOP/s" if yard else "not measured")
                     + "".join(f", {p} {y / 1e9:.0f}" for p, y in yards.items() if p != "fp32" and y))  # fmt: skip
    md, _ = study.write(f"inference-{name}", header(flight), lines, title=title, machine=study.machine(outcomes),
                        notes=["Each run, with its command:", *notes], results_dir=results_dir)  # fmt: skip
    print("\n" + md.read_text(), flush=True)
    return md, all(o.ok for o in outcomes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", default=",".join(STUDIES), help=f"comma-separated, of: {', '.join(STUDIES)}")
    parser.add_argument("--results-dir", type=Path, default=study.RESULTS_DIR, help="where the studies' tables go")
    parser.add_argument("extra", nargs="*", help="bench overrides for every run (after --)")
    args = parser.parse_args(argv)
    names = args.studies.split(",")
    unknown = [n for n in names if n not in STUDIES]
    if unknown:
        parser.error(f"--studies: unknown {unknown}; valid: {', '.join(STUDIES)}")
    out = record.new_run_dir("bench-inference")
    ok = True
    with record.recording(out, "bench_inference", {"args": {**vars(args), "results_dir": str(args.results_dir)}}):
        for name in names:
            ok &= run_study(name, args.extra, out, args.results_dir)[1]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
