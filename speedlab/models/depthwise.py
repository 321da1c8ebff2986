"""A depthwise convolution whose backward is fast on the CPU, and whose forward stays fp32 under autocast.

torch 2.15's CPU kernels for a depthwise 7x7 convolution spend almost all of a training step's convolution time in
the weight gradient: for the quick ConvNeXt's first stage (64 x 32 x 16 x 16, channels_last) oneDNN takes 2.15 ms
for it against 0.25 ms for the forward, and 7.6 ms in bf16 (docs/results/depthwise.md). Here the weight gradient is
written as what it is, one reduction per kernel tap over batch and space, which Inductor turns into a single
vectorised loop (1.23 ms for that shape); the input gradient is the forward convolution of the output gradient with
the flipped kernel. Under autocast the convolution runs in fp32 (the few FLOPs it has gain nothing from bf16, and
its bf16 backward is the slowest of all).

`DepthwiseConv2d` is an `nn.Conv2d` (same parameters, same state dict), so checkpoints move between it and the
plain layer. Shapes the fast path does not cover (stride or dilation other than 1, padding other than "same") run
the plain convolution. The reference twin is `nn.Conv2d`; tests/test_models.py holds the parity test.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def weight_grad(x: torch.Tensor, grad: torch.Tensor, kernel: int) -> torch.Tensor:
    """d loss / d weight of a stride-1, "same"-padded depthwise convolution: for each tap (i, j), the sum over batch
    and space of the padded input shifted by (i, j) times the output gradient. Channels last inside, so that each
    tap's sum is one vectorised pass over contiguous channels."""
    pad = kernel // 2
    height, width = grad.shape[-2:]
    x_nhwc = F.pad(x.permute(0, 2, 3, 1), (0, 0, pad, pad, pad, pad))
    g_nhwc = grad.permute(0, 2, 3, 1)
    taps = [
        (x_nhwc[:, i : i + height, j : j + width] * g_nhwc).sum((0, 1, 2)) for i in range(kernel) for j in range(kernel)
    ]
    return torch.stack(taps, dim=1).reshape(grad.shape[1], 1, kernel, kernel)


# The reduction is compiled on its own (one kernel per shape, on first use) and reached through a custom op, which a
# compiled model's backward calls as an opaque kernel: traced inline, Inductor fused it with the layer norm's
# backward into one loop that ran 5.7x slower (7.1 ms against 1.25 ms on the first stage).
# Compiled on first use, not at import: importing torch.compile's machinery costs every process a second or more.
@functools.cache
def _compiled_weight_grad() -> Callable[..., torch.Tensor]:
    return torch.compile(weight_grad, dynamic=False, fullgraph=True)


@torch.library.custom_op("speedlab::depthwise_weight_grad", mutates_args=())
def depthwise_weight_grad(x: torch.Tensor, grad: torch.Tensor, kernel: int) -> torch.Tensor:
    return _compiled_weight_grad()(x, grad, kernel)


@depthwise_weight_grad.register_fake
def _(x: torch.Tensor, grad: torch.Tensor, kernel: int) -> torch.Tensor:
    return grad.new_empty((grad.shape[1], 1, kernel, kernel))


class _DepthwiseFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:  # noqa: ANN001
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return F.conv2d(x, weight, bias, padding=weight.shape[-1] // 2, groups=weight.shape[0])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN205
        x, weight = ctx.saved_tensors
        kernel, channels = weight.shape[-1], weight.shape[0]
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = F.conv2d(grad, weight.flip(2, 3), padding=kernel // 2, groups=channels)
        if ctx.needs_input_grad[1]:
            grad_w = depthwise_weight_grad(x, grad, kernel)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b


class DepthwiseConv2d(nn.Conv2d):
    """`nn.Conv2d(dim, dim, kernel, padding=kernel // 2, groups=dim)` with the fast backward above, run in fp32."""

    def fast_path_applies(self) -> bool:
        kernel = self.kernel_size[0]
        return (
            self.groups == self.in_channels == self.out_channels
            and self.kernel_size == (kernel, kernel)
            and kernel % 2 == 1
            and self.stride == (1, 1)
            and self.dilation == (1, 1)
            and self.padding == (kernel // 2, kernel // 2)
            and self.padding_mode == "zeros"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fast_path_applies():
            return super().forward(x)
        x, weight, bias = _fp32(x), _fp32(self.weight), None if self.bias is None else _fp32(self.bias)
        with torch.autocast(device_type=x.device.type, enabled=False):
            if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
                return _DepthwiseFunction.apply(x, weight, bias)
            # No backward to speed up (inference, export): the plain convolution, so exporters see a standard op.
            return F.conv2d(x, weight, bias, padding=self.padding, groups=self.groups)


def _fp32(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype == torch.float32 else t.float()  # no cast op at all when it is fp32 already (exporters)
