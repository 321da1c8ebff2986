"""Benchmark the activations: what each saves for backward, how fast it runs, and what it costs a training step.

    python scripts/bench_activations.py [--device cpu|cuda] [--shape 16,28,28,384] [--reps 20]

1. Bytes saved for backward per activation element (`torch.autograd.graph.saved_tensors_hooks`), per variant and
   dtype, on standard-normal inputs: exact and machine-independent.
2. Forward and forward+backward time per variant, eager and torch.compile'd, on one tensor laid out as in the
   ConvNeXt block (N, H, W, 4C), as a ratio to relu measured in the same run (median of --reps; p10/p90 kept).
3. Training-step memory of the quick ConvNeXt with each activation: on a GPU `max_memory_allocated` of one step;
   on the CPU the bytes autograd saves during one step's forward.
Writes result.json (kind: bench_activations) with every row under artifacts/runs/, and the tables to
docs/results/activations.md and .csv (activations-saved.csv, activations-step-memory.csv).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.autograd.graph import saved_tensors_hooks

import activations
from activations.fastswish_triton import implementation
from speedlab import cli, models, record, stats, study
from speedlab.data.build import describe

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class SavedBytes:
    """Bytes of the distinct tensors autograd saves for backward inside the block (views of one storage count once)."""

    def __init__(self) -> None:
        self.storages: dict[int, int] = {}

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        self.storages[storage.data_ptr()] = max(self.storages.get(storage.data_ptr(), 0), storage.nbytes())
        return t

    def __enter__(self) -> SavedBytes:
        self._hooks = saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)

    @property
    def total(self) -> int:
        return sum(self.storages.values())


def saved_bytes_per_element(name: str, dtype: torch.dtype, n: int = 1 << 20) -> float:
    x = torch.randn(n, generator=torch.Generator().manual_seed(0)).to(dtype).requires_grad_()
    pre = x * 1.0  # a non-leaf input, as inside a network
    with SavedBytes() as saved:
        activations.create(name)(pre)
    return saved.total / n


def timed(fn: Callable[[], object], device: torch.device, reps: int, warmup: int = 3) -> dict[str, float]:
    """Median and spread of `reps` calls after `warmup`, in ms (CUDA events on a GPU, perf_counter on the CPU)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return {
        "p50_ms": stats.percentile(times, 50),
        "p10_ms": stats.percentile(times, 10),
        "p90_ms": stats.percentile(times, 90),
        "n": len(times),
    }


def speed_rows(names: list[str], shape: tuple[int, ...], device: torch.device, reps: int) -> list[dict]:
    x = torch.randn(shape, device=device)
    grad = torch.randn(shape, device=device)
    rows = []
    for name in names:
        for mode in ("eager", "compiled"):
            act = activations.create(name)
            fn = torch.compile(act) if mode == "compiled" else act
            xg = x.clone().requires_grad_()

            def forward(fn=fn) -> None:
                with torch.no_grad():
                    fn(x)

            def forward_backward(fn=fn, xg=xg) -> None:
                fn(xg).backward(grad)
                xg.grad = None

            rows.append(
                {"activation": name, "mode": mode, "forward": timed(forward, device, reps),
                 "forward_backward": timed(forward_backward, device, reps)}
            )  # fmt: skip
            print(f"  {name:>20} {mode:>8}: fwd {rows[-1]['forward']['p50_ms']:.2f} ms, "
                  f"fwd+bwd {rows[-1]['forward_backward']['p50_ms']:.2f} ms", flush=True)  # fmt: skip
    for row in rows:
        for base in ("relu", "gelu"):
            same_mode = [r for r in rows if r["activation"] == base and r["mode"] == row["mode"]]
            for part in ("forward", "forward_backward"):
                row[part][f"vs_{base}"] = row[part]["p50_ms"] / same_mode[0][part]["p50_ms"] if same_mode else None
    return rows


def step_memory(name: str, device: torch.device) -> dict:
    """One training step of the quick ConvNeXt (batch 64, 64 px, 200 classes) with activation `name`."""
    cfg = cli.compose("train", ["+preset=quick", f"model.activation={name}"])
    torch.manual_seed(0)
    model = models.build(cfg.model, describe(cfg.data)).to(device)
    x = torch.randn(64, 3, 64, 64, device=device)
    y = torch.randint(0, 200, (64,), device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        F.cross_entropy(model(x), y).backward()
        torch.cuda.synchronize()
        return {"kind": "cuda_max_memory_allocated_above_weights", "bytes": torch.cuda.max_memory_allocated() - base}
    with SavedBytes() as saved:
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    return {"kind": "saved_for_backward", "bytes": saved.total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--shape", default=None, help="N,H,W,C of the timed tensor (CPU 16,28,28,384; GPU 128,56,56,384)"
    )
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--names", default="relu,gelu,hardswish,silu," + ",".join(
        n for n in activations.names() if n.startswith("fastswish")))  # fmt: skip
    parser.add_argument("--study", default="activations", help="docs/results/<study>.md and .csv")
    parser.add_argument("--results-dir", type=Path, default=study.RESULTS_DIR, help="where the study's tables go")
    args = parser.parse_args()
    device = torch.device(args.device)
    names = args.names.split(",")
    unknown = [n for n in names if n not in activations.names()]
    if unknown:
        parser.error(f"--names: unknown {unknown}; valid: {', '.join(activations.names())}")
    shape = tuple(
        int(s) for s in (args.shape or ("128,56,56,384" if device.type == "cuda" else "16,28,28,384")).split(",")
    )

    run_dir = record.new_run_dir("bench_activations")
    settings = {"args": {**vars(args), "results_dir": str(args.results_dir)}, "shape": shape}
    with record.recording(run_dir, "bench_activations", settings) as rec:
        rec["args"], rec["shape"] = settings["args"], list(shape)
        rec["fastswish_triton_implementation"] = {k: implementation(device, v) for k, v in DTYPES.items()}
        print("saved for backward (bytes per activation element)")
        saved = [{"activation": n, "dtype": d, "bytes_per_element": saved_bytes_per_element(n, t)}
                 for n in names for d, t in DTYPES.items()]  # fmt: skip
        rec["saved"] = saved
        print(f"speed on {tuple(shape)} ({device})")
        rec["speed"] = speed_rows(names, shape, device, args.reps)
        print("training-step memory, quick ConvNeXt")
        rec["step_memory"] = [{"activation": n, **step_memory(n, device)} for n in names]
    md = write_study(rec.data, names, args.study, args.results_dir)
    print("\n" + md.read_text() + f"\nresult: {rec.path}")


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}×"


def _relative(value: float, base: float | None) -> str:
    return "-" if not base else f"{value / base:.2f}×"


def write_study(data: dict, names: list[str], study_name: str, results_dir: Path) -> Path:
    """The speed table (eager and compiled, as ratios to relu and gelu of the same run) as the study's main table;
    the bytes saved for backward and the step memory as its further tables."""
    speed = [[r["activation"], r["mode"], f"{r['forward']['p50_ms']:.3f} ms",
              f"{r['forward']['p10_ms']:.3f}–{r['forward']['p90_ms']:.3f}", _ratio(r["forward"]["vs_relu"]),
              f"{r['forward_backward']['p50_ms']:.3f} ms",
              f"{r['forward_backward']['p10_ms']:.3f}–{r['forward_backward']['p90_ms']:.3f}",
              _ratio(r["forward_backward"]["vs_relu"]), _ratio(r["forward_backward"]["vs_gelu"])]
             for r in data["speed"]]  # fmt: skip
    by = {(r["activation"], r["dtype"]): r["bytes_per_element"] for r in data["saved"]}
    saved = [[n, *(f"{by[n, d]:.2f}" for d in DTYPES), _relative(by[n, "fp32"], by.get(("relu", "fp32"))),
              _relative(by[n, "fp32"], by.get(("gelu", "fp32")))] for n in names]  # fmt: skip
    relu = next((m["bytes"] for m in data["step_memory"] if m["activation"] == "relu"), None)
    memory = [[m["activation"], f"{m['bytes'] / 2**20:.1f} MiB", _relative(m["bytes"], relu)]
              for m in data["step_memory"]]  # fmt: skip
    shape = "×".join(str(s) for s in data["shape"])
    machine = study.machine_of(data)  # names the GPU too, where there is one
    md, _ = study.write(
        study_name,
        ["Activation", "Mode", "Forward p50", "p10–p90", "vs relu", "Fwd+bwd p50", "p10–p90", "vs relu", "vs gelu"],
        speed, title=f"Activations: speed on one {shape} tensor ({data['args']['device']}), memory saved for backward",
        machine=machine, results_dir=results_dir,
        notes=[f"Median of {data['args']['reps']} calls after 3 warm-up calls; ratios to relu and gelu of the same "
               f"mode in this run. fastswish_triton ran as: {data['fastswish_triton_implementation']}.",
               f"Command: `python scripts/bench_activations.py --shape {','.join(map(str, data['shape']))} "
               f"--reps {data['args']['reps']}`"],
        more=[study.Table("saved", "Bytes saved for backward per activation element", ["Activation",
              *(f"{d}" for d in DTYPES), "vs relu (fp32)", "vs gelu (fp32)"], saved,
              ["Exact and machine-independent: the distinct storages autograd keeps, on standard-normal inputs."]),
              study.Table("step-memory", "Training-step memory of the quick ConvNeXt (batch 64, 64 px)",
              ["Activation", f"Step memory ({data['step_memory'][0]['kind']})", "vs relu"], memory)],
    )  # fmt: skip
    return md


if __name__ == "__main__":
    main()
