"""FastSwish as Triton kernels, in three layers:

1. `_forward_kernel` / `_backward_kernel` (`@triton.jit`, block size a `tl.constexpr`): one pass over the elements,
   fp32 math, fp32 / bf16 / fp16 in and out. The forward reads x once and writes y once; the backward reads x and dy
   once each and writes dx once.
2. `launch_forward` / `launch_backward`: allocate the output and pick the grid.
3. `speedlab::fastswish` and `speedlab::fastswish_backward`, `torch.library` custom ops with `register_fake` (so
   torch.compile traces them without a graph break) and `register_autograd` (which saves only the input).

The custom op runs the Triton kernels on CUDA tensors of those dtypes. Everywhere else (the CPU, float64, or no
Triton) it runs the fallback chosen here: the same fp32 math as one Inductor-compiled loop per pass, which also
reads and writes each element once. `implementation(device, dtype)` says which one runs; results record it.
Under `TRITON_INTERPRET=1` the launchers also run on CPU tensors, which is how the kernels are tested without a GPU.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from activations import register, register_onnx
from activations.fastswish import ALPHA, _upcast, fastswish_derivative, fastswish_reference

try:
    import triton
    import triton.language as tl
except ImportError:  # the CPU-only install may lack Triton: the fallback covers every device then
    triton = None

KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
BLOCK = 1024

if triton is not None:

    @triton.jit
    def _forward_kernel(x_ptr, y_ptr, n, alpha: tl.constexpr, BLOCK: tl.constexpr):
        offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offsets < n
        x = tl.load(x_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
        middle = x * (x + alpha) / (alpha + 3.0)
        clamped = tl.minimum(x, -3.0)  # keeps the unused branch finite
        left = -1.0 / (clamped * clamped)
        y = tl.where(x > 3.0, x, tl.where(x < -3.0, left, middle))
        tl.store(y_ptr + offsets, y.to(y_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _backward_kernel(x_ptr, dy_ptr, dx_ptr, n, alpha: tl.constexpr, BLOCK: tl.constexpr):
        offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offsets < n
        x = tl.load(x_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(dy_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
        clamped = tl.minimum(x, -3.0)
        middle = (2.0 * x + alpha) / (alpha + 3.0)
        slope = tl.where(x > 3.0, 1.0, tl.where(x < -3.0, 2.0 / (clamped * clamped * clamped), middle))
        tl.store(dx_ptr + offsets, (dy * slope).to(dx_ptr.dtype.element_ty), mask=mask)


def _dense(x: torch.Tensor) -> torch.Tensor:
    """x itself when its elements fill its storage densely (contiguous or channels_last), else a contiguous copy:
    the kernels walk memory as one flat array, and `empty_like` keeps the same layout for the output."""
    if x.is_contiguous() or (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)):
        return x
    return x.contiguous()


def launch_forward(x: torch.Tensor) -> torch.Tensor:
    x = _dense(x)
    y = torch.empty_like(x)
    n = x.numel()
    if n:
        _forward_kernel[(triton.cdiv(n, BLOCK),)](x, y, n, alpha=ALPHA, BLOCK=BLOCK)
    return y


def launch_backward(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    x = _dense(x)
    grad = _dense(grad)
    if grad.stride() != x.stride():
        grad = grad.contiguous() if x.is_contiguous() else grad.contiguous(memory_format=torch.channels_last)
    dx = torch.empty_like(x, dtype=grad.dtype)
    n = x.numel()
    if n:
        _backward_kernel[(triton.cdiv(n, BLOCK),)](x, grad, dx, n, alpha=ALPHA, BLOCK=BLOCK)
    return dx


def implementation(device: torch.device | str, dtype: torch.dtype = torch.float32) -> str:
    """Which implementation the custom op runs for tensors of `device` and `dtype`."""
    if triton is not None and torch.device(device).type == "cuda" and dtype in KERNEL_DTYPES:
        return "triton"
    return "inductor-fallback"


# The fallback: the kernels' math as Inductor-compiled loops (dynamic shapes, so one compile serves every size).
@functools.cache
def _fallback(kind: str):
    if kind == "forward":
        return torch.compile(lambda x: fastswish_reference(_upcast(x)).to(x.dtype), dynamic=True)
    return torch.compile(lambda x, g: (_upcast(g) * fastswish_derivative(_upcast(x))).to(g.dtype), dynamic=True)


@torch.library.custom_op("speedlab::fastswish", mutates_args=())
def fastswish_op(x: torch.Tensor) -> torch.Tensor:
    if implementation(x.device, x.dtype) == "triton":
        return launch_forward(x)
    return _fallback("forward")(x)


@fastswish_op.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


@torch.library.custom_op("speedlab::fastswish_backward", mutates_args=())
def fastswish_backward_op(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    if implementation(x.device, x.dtype) == "triton" and grad.dtype in KERNEL_DTYPES:
        return launch_backward(x, grad)
    return _fallback("backward")(x, grad)


@fastswish_backward_op.register_fake
def _(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(grad)


def _setup_context(ctx, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
    ctx.save_for_backward(inputs[0])  # the input alone: one tensor, in its own dtype


def _backward(ctx, grad: torch.Tensor) -> torch.Tensor:
    (x,) = ctx.saved_tensors
    return fastswish_backward_op(x, grad)


fastswish_op.register_autograd(_backward, setup_context=_setup_context)


@register_onnx("speedlab::fastswish")
def _fastswish_onnx(node, scalar, x):
    """The same piecewise math in standard ONNX ops, so an exported model needs no custom-op library."""
    three, minus_three = scalar(3.0, x), scalar(-3.0, x)
    middle = node("Div", node("Mul", x, node("Add", x, scalar(ALPHA, x))), scalar(ALPHA + 3.0, x))
    clamped = node("Min", x, minus_three)  # keeps the unused branch finite, as the kernels do
    left = node("Neg", node("Reciprocal", node("Mul", clamped, clamped)))
    return node("Where", node("Greater", x, three), x, node("Where", node("Less", x, minus_three), left, middle))


@register("fastswish_triton")
class FastSwishTriton(nn.Module):
    """FastSwish through the `speedlab::fastswish` custom op (Triton on CUDA, the compiled fallback elsewhere)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fastswish_op(x)

    @staticmethod
    def implementation(device: torch.device | str, dtype: torch.dtype = torch.float32) -> str:
        return implementation(device, dtype)
