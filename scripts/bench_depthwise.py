"""Benchmark the fast depthwise convolution against torch's on the quick ConvNeXt's four stages.

    python scripts/bench_depthwise.py [--batch 64] [--resolution 64] [--dims 32,64,128,256] [--kernel 7]

Per stage (input N x C x H x W, channels_last, as the compiled model runs it): the forward of torch's depthwise
convolution, its weight gradient in fp32 and bf16 (`aten.convolution_backward` asked for the weight only), the
fast layer's weight gradient (`speedlab::depthwise_weight_grad`, one compiled loop), and a whole forward + backward
of `nn.Conv2d` against `DepthwiseConv2d`. p50 of speedlab's timing harness, in one process; the ratios are the claim.
Writes docs/results/depthwise.md and .csv (`--results-dir`) and result.json (kind: bench_depthwise).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from speedlab import record, study, timing  # noqa: E402
from speedlab.models.depthwise import DepthwiseConv2d, depthwise_weight_grad  # noqa: E402

CPU = torch.device("cpu")


def weight_grad_of_torch(x: torch.Tensor, grad: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    pad = weight.shape[-1] // 2
    return torch.ops.aten.convolution_backward(grad, x, weight, None, [1, 1], [pad, pad], [1, 1], False, [0, 0],
                                               weight.shape[0], [False, True, False])[1]  # fmt: skip


def stage_times(batch: int, channels: int, size: int, kernel: int, cfg: timing.TimingCfg) -> dict[str, float]:
    """Milliseconds (p50) of each part for one stage's shape."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, channels, size, size, generator=gen).contiguous(memory_format=torch.channels_last)
    grad = torch.randn_like(x)
    plain = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels).to(
        memory_format=torch.channels_last)  # fmt: skip
    fast = DepthwiseConv2d(channels, channels, kernel, padding=kernel // 2, groups=channels)
    fast.load_state_dict(plain.state_dict())
    fast = fast.to(memory_format=torch.channels_last)
    weight = plain.weight.detach()
    bf16 = x.bfloat16(), grad.bfloat16(), weight.bfloat16()

    def step(layer: nn.Module) -> None:
        xg = x.detach().requires_grad_()
        layer(xg).backward(grad)

    parts = {
        "forward (torch)": lambda: plain(x),
        "weight grad, torch fp32": lambda: weight_grad_of_torch(x, grad, weight),
        "weight grad, torch bf16": lambda: weight_grad_of_torch(*bf16),
        "weight grad, fast layer": lambda: depthwise_weight_grad(x, grad, kernel),
        "fwd + bwd, nn.Conv2d": lambda: step(plain),
        "fwd + bwd, DepthwiseConv2d": lambda: step(fast),
    }
    with torch.no_grad():
        out = {name: timing.measure(fn, CPU, cfg).p50_ms for name, fn in parts.items() if "fwd + bwd" not in name}
    out.update({name: timing.measure(fn, CPU, cfg).p50_ms for name, fn in parts.items() if "fwd + bwd" in name})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--resolution", type=int, default=64, help="input resolution (the stem divides it by 4)")
    parser.add_argument("--dims", default="32,64,128,256", help="channels per stage")
    parser.add_argument("--kernel", type=int, default=7)
    parser.add_argument("--min-time", type=float, default=0.5, help="seconds per measurement")
    parser.add_argument("--study", default="depthwise", help="docs/results/<study>.md and .csv")
    parser.add_argument("--results-dir", type=Path, default=study.RESULTS_DIR, help="where the study's table goes")
    args = parser.parse_args(argv)
    cfg = timing.TimingCfg(warmup_iters=3, warmup_min_s=0.1, min_iters=10, min_time_s=args.min_time)
    dims = [int(d) for d in args.dims.split(",")]
    settings = {"args": {**vars(args), "results_dir": str(args.results_dir)}}
    rows = []
    with record.recording(record.new_run_dir("bench-depthwise"), "bench_depthwise", settings) as rec:
        for stage, channels in enumerate(dims):
            size = args.resolution // 4 // 2**stage
            times = stage_times(args.batch, channels, size, args.kernel, cfg)
            rows.append({"stage": stage + 1, "shape": [args.batch, channels, size, size], "ms": times})
            print(f"stage {stage + 1}: " + ", ".join(f"{k} {v:.3f} ms" for k, v in times.items()), flush=True)
        rec["rows"] = rows
    names = list(rows[0]["ms"])
    header = ["Stage", "N × C × H × W", *(f"{n}" for n in names), "weight grad: torch / fast", "step: torch / fast"]
    lines = [[str(r["stage"]), " × ".join(map(str, r["shape"])), *(f"{r['ms'][n]:.3f} ms" for n in names),
              f"{r['ms'][names[1]] / r['ms'][names[3]]:.1f}×", f"{r['ms'][names[4]] / r['ms'][names[5]]:.1f}×"]
             for r in rows]  # fmt: skip
    md, _ = study.write(
        args.study, header, lines, machine=study.machine_of(rec.data), results_dir=args.results_dir,
        title=f"The fast depthwise {args.kernel}×{args.kernel} convolution against torch's, channels_last, fp32",
        notes=["p50 of speedlab's timing harness, one process. Command: `python scripts/bench_depthwise.py "
               f"--batch {args.batch} --resolution {args.resolution} --dims {args.dims}`"],
    )  # fmt: skip
    print("\n" + md.read_text() + f"\nresult: {rec.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
