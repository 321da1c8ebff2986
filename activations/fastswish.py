"""FastSwish, the reference study's custom activation, in three pure-PyTorch forms (the Triton one is in
`fastswish_triton.py`):

    y = x                      for x > 3
    y = -1 / x**2              for x < -3
    y = x * (x + a) / (a + 3)  otherwise, a = 3.230769230769231 (the pieces meet at x = +-3)

- `fastswish_naive`: the reference's formulation, masked index assignment. Kept to reproduce its finding: autograd
  saves several tensors per element and torch.compile cannot capture it in one graph.
- `fastswish`: `torch.where` composite; plain elementwise ops that Inductor fuses into one loop.
- `fastswish_autograd`: a `torch.autograd.Function` that saves only its input and computes the gradient from it.

None has parameters, so a checkpoint trained with one variant loads with any other.
"""

from __future__ import annotations

import torch
from torch import nn

from activations import register

ALPHA = 3.230769230769231


def fastswish_reference(x: torch.Tensor) -> torch.Tensor:
    """The definition, evaluated piecewise; every variant is compared against this (in float64 in the tests)."""
    middle = x * (x + ALPHA) / (ALPHA + 3.0)
    # Clamp the denominator so the unused branch never produces inf/nan that would leak into gradients.
    left = -1.0 / torch.clamp(x, max=-3.0) ** 2
    return torch.where(x > 3.0, x, torch.where(x < -3.0, left, middle))


def fastswish_derivative(x: torch.Tensor) -> torch.Tensor:
    """dy/dx: 1 above 3, 2 / x**3 below -3, (2x + a) / (a + 3) between (the middle piece's slope at exactly +-3)."""
    clamped = torch.clamp(x, max=-3.0)
    middle = (2.0 * x + ALPHA) / (ALPHA + 3.0)
    return torch.where(x > 3.0, torch.ones_like(x), torch.where(x < -3.0, 2.0 / (clamped * clamped * clamped), middle))


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """fp32 math for half-precision inputs (as the Triton kernels do); other dtypes compute as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


@register("fastswish")
class FastSwish(nn.Module):
    """FastSwish via torch.where: no parameters, fusable by torch.compile."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fastswish_reference(x)


@register("fastswish_naive")
class FastSwishNaive(nn.Module):
    """The reference study's version: compute the middle piece everywhere, then overwrite the outer pieces through
    boolean masks. Autograd keeps the masks, the gathered values and the intermediate products for backward, and the
    data-dependent shapes of `x[mask]` break torch.compile's graph."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * (x + ALPHA) / (ALPHA + 3.0)
        upper, lower = x > 3.0, x < -3.0
        y[upper] = x[upper]
        y[lower] = -1.0 / x[lower] ** 2
        return y


class _FastSwishFunction(torch.autograd.Function):
    """Saves only the input, in its own dtype; the backward recomputes the slope from it."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return fastswish_reference(_upcast(x)).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return (grad.to(_upcast(x).dtype) * fastswish_derivative(_upcast(x))).to(grad.dtype)


@register("fastswish_autograd")
class FastSwishAutograd(nn.Module):
    """FastSwish with a hand-written backward: one input-sized tensor saved per activation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _FastSwishFunction.apply(x)
