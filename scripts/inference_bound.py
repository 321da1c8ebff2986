"""How close can a model's inference get to the matmul yardstick on this machine? A bound from its own ops.

    python scripts/inference_bound.py [--batches 64,1] [-- model/data overrides, default: +preset=quick]

Records every aten op of one fp32 forward pass (eval mode, channels_last as the fast backends run it) with its
arguments, then times each compute op alone, on fresh tensors of the same shapes and strides: the GEMMs (mm, addmm,
bmm, linear) and the convolutions. Their FLOPs come from torch's flop counter. Prints, per op kind: calls, FLOPs,
the time alone and its fraction of the fp32 yardstick measured in the same process; then the bound: the forward's
FLOPs over the time of its GEMMs and convolutions alone. No backend can beat that bound with these kernels, since
the elementwise ops, norms and copies only add time; a target above it needs faster GEMM or convolution kernels
for these shapes, not a better graph. Writes result.json under artifacts/runs/ and the table to
docs/results/inference-bound.md and .csv.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from speedlab import cli, models, record, stats, study  # noqa: E402
from speedlab.data.build import describe  # noqa: E402
from speedlab.roofline import count_flops, yardstick  # noqa: E402

GEMMS = {"mm", "addmm", "bmm", "baddbmm", "linear"}
CONVS = {"conv2d", "convolution", "_convolution", "mkldnn_convolution", "convolution_overrideable"}


class _Recorder(TorchDispatchMode):
    """Every GEMM and convolution call of a forward pass, with its arguments (tensors kept as shape and stride)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[object, tuple, dict]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        name = func.overloadpacket.__name__
        if name in GEMMS or name in CONVS:
            self.calls.append((func, args, kwargs or {}))
        return func(*args, **(kwargs or {}))


def _fresh(value: object) -> object:
    if isinstance(value, torch.Tensor):
        return torch.empty_strided(value.shape, value.stride(), dtype=value.dtype).normal_()
    if isinstance(value, list | tuple):
        return type(value)(_fresh(v) for v in value)
    return value


def _time_alone(func: object, args: tuple, kwargs: dict, min_s: float = 0.2) -> float:
    """Median seconds of one call on fresh inputs of the same shapes (after a warm-up)."""
    args, kwargs = _fresh(args), {k: _fresh(v) for k, v in kwargs.items()}
    for _ in range(3):
        func(*args, **kwargs)
    times, end = [], time.perf_counter() + min_s
    while time.perf_counter() < end or len(times) < 10:
        t0 = time.perf_counter()
        func(*args, **kwargs)
        times.append(time.perf_counter() - t0)
    return stats.median(times)


def _flops_of(func: object, args: tuple, kwargs: dict) -> int:
    with FlopCounterMode(display=False) as counter:
        func(*_fresh(args), **{k: _fresh(v) for k, v in kwargs.items()})
    return counter.get_total_flops()


def bound_of(model: torch.nn.Module, x: torch.Tensor) -> dict:
    """Per op kind (GEMMs, dense and depthwise convolutions): calls, FLOPs and the time each call takes alone; the
    forward's FLOPs, and the yardstick measured before and after (its mean is the reference)."""
    yard_before = yardstick(torch.device("cpu"), "fp32")
    with torch.inference_mode():
        total_flops = count_flops(lambda: model(x))
        recorder = _Recorder()
        with recorder:
            model(x)
        kinds: dict[str, dict[str, float]] = defaultdict(lambda: {"calls": 0, "flops": 0, "seconds": 0.0})
        for func, call_args, kwargs in recorder.calls:
            kind = "GEMMs" if func.overloadpacket.__name__ in GEMMS else "convolution"
            if kind == "convolution":
                groups = call_args[-1] if isinstance(call_args[-1], int) else 1
                kind = "depthwise convolutions" if groups > 1 else "dense convolutions"
            row = kinds[kind]
            row["calls"] += 1
            row["flops"] += _flops_of(func, call_args, kwargs)
            row["seconds"] += _time_alone(func, call_args, kwargs)
    yard = (yard_before + yardstick(torch.device("cpu"), "fp32")) / 2
    busy = sum(r["seconds"] for r in kinds.values())
    return {"batch": len(x), "forward_flops": total_flops, "yardstick_flops_per_s": yard, "kinds": dict(kinds),
            "compute_ops_seconds": busy, "bound_fraction_of_yardstick": total_flops / busy / yard}  # fmt: skip


def table_rows(bounds: list[dict]) -> list[list[str]]:
    rows = []
    for b in bounds:
        yard = b["yardstick_flops_per_s"]
        for kind, r in sorted(b["kinds"].items(), key=lambda kv: -kv[1]["seconds"]):
            rate = r["flops"] / r["seconds"] if r["seconds"] else 0.0
            rows.append([str(b["batch"]), kind, f"{r['calls']:.0f}", f"{r['flops'] / 1e9:.3f}",
                         f"{r['seconds'] * 1e3:.3f} ms", f"{rate / 1e9:.0f}", _percent(rate / yard)])  # fmt: skip
        rows.append([str(b["batch"]), "**bound: the forward's FLOPs over these ops' time**", "",
                     f"{b['forward_flops'] / 1e9:.3f}", f"{b['compute_ops_seconds'] * 1e3:.3f} ms",
                     f"{b['forward_flops'] / b['compute_ops_seconds'] / 1e9:.0f}",
                     _percent(b["bound_fraction_of_yardstick"])])  # fmt: skip
    return rows


def _percent(fraction: float) -> str:
    """One decimal, or two significant digits below 0.1 %: a tiny model's bound reads 0.04 %, never 0.0 %."""
    return f"{fraction:.1%}" if fraction >= 1e-3 else f"{fraction * 100:.2g}%"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", default="64,1", help="batch sizes, comma-separated")
    parser.add_argument("--study", default="inference-bound", help="docs/results/<study>.md and .csv")
    parser.add_argument("--results-dir", type=Path, default=study.RESULTS_DIR, help="where the study's table goes")
    parser.add_argument("overrides", nargs="*", default=["+preset=quick"])
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    torch.manual_seed(0)
    cfg = cli.compose("bench", args.overrides)
    spec = describe(cfg.data)
    model = models.build(cfg.model, spec).eval().to(memory_format=torch.channels_last)
    settings = {"args": {**vars(args), "results_dir": str(args.results_dir)}}
    with record.recording(record.new_run_dir("inference-bound"), "inference_bound", settings) as rec:
        bounds = []
        for batch in batches:
            x = torch.randn(batch, *spec.input_shape).contiguous(memory_format=torch.channels_last)
            bounds.append(bound_of(model, x))
            print(f"batch {batch}: bound {bounds[-1]['bound_fraction_of_yardstick']:.1%} of the yardstick", flush=True)
            rec["bounds"] = bounds
            rec.save()
    yards = ", ".join(f"{b['yardstick_flops_per_s'] / 1e9:.0f}" for b in bounds)
    md, _ = study.write(
        args.study, ["Batch", "Ops", "Calls", "GFLOP", "Time alone", "GFLOP/s", "Of yardstick"], table_rows(bounds),
        title=f"The inference bound of {cfg.model.name} ({' '.join(args.overrides)}), fp32, channels_last",
        machine=study.machine_of(rec.data), results_dir=args.results_dir,
        notes=[f"Each GEMM and convolution of one forward pass, timed alone on fresh tensors of its shapes and "
               f"strides (median over at least 0.2 s). The fp32 matmul yardstick (mean of before and after, per "
               f"batch): {yards} GFLOP/s. No backend built on these kernels can pass the bound: every other op "
               f"(norms, activations, copies) only adds time.",
               f"Command: `python scripts/inference_bound.py --batches {args.batches} {' '.join(args.overrides)}`"],
    )  # fmt: skip
    print("\n" + md.read_text() + f"\nresult: {record.result_path(rec.run_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
