"""The machine's own roofline, shared by every command: FLOPs of a forward pass or a training step, counted by
`torch.utils.flop_counter` on the real ops (a multiply-add counts two; MACs are half of that), and the yardstick,
what a large square matmul in a dtype reaches on this device, measured in the calling process."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from speedlab import timing

YARDSTICK_SIZE = {"cpu": 2048, "cuda": 8192}
YARDSTICK_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.int8}


def conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                        _output_padding, _groups, output_mask, out_shape=None) -> int:  # fmt: skip
    """A convolution's backward: the input gradient and the weight gradient each take exactly the forward's
    multiply-adds. torch 2.15's own formula transposes the weight's shape, which loses the group division, so it
    counts a depthwise convolution's backward C times over (28x the forward for the quick ConvNeXt's 7x7 depthwise
    layers; pytorch/pytorch#183405)."""
    forward = conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape), transposed=transposed)
    return forward * (int(output_mask[0]) + int(output_mask[1]))


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of everything `fn` runs (forward, and backward when it calls one)."""
    counter = FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: conv_backward_flops})
    with counter:
        fn()
    return int(counter.get_total_flops())


def forward_flops(model: torch.nn.Module, example: torch.Tensor) -> int:
    """FLOPs of one forward pass on `example` (one sample: a batch of 1)."""
    with torch.no_grad():
        return count_flops(lambda: model(example))


def yardstick(where: torch.device, precision: str) -> float | None:
    """FLOP/s of a large square matmul in the precision's dtype on this device: what the hardware gives a GEMM;
    None where this device has no kernel for the dtype."""
    n = YARDSTICK_SIZE.get(where.type, 1024)
    dtype = YARDSTICK_DTYPES[precision]
    try:
        if dtype is torch.int8:
            a = torch.randint(-64, 64, (n, n), dtype=dtype, device=where)
            fn = lambda: torch._int_mm(a, a)  # noqa: E731
        else:
            a = torch.randn(n, n, device=where).to(dtype)
            fn = lambda: a @ a  # noqa: E731
        latency = timing.measure(fn, where, timing.TimingCfg(2, 0.1, 5, 0.3))
    except RuntimeError:  # no kernel for this dtype here
        return None
    return 2 * n**3 / (latency.p50_ms / 1e3)
