"""FastSwish, the reference study's custom activation, as a compile-friendly composite.

    y = x                      for x > 3
    y = -1 / x**2              for x < -3
    y = x * (x + a) / (a + 3)  otherwise, a = 3.230769230769231 (the pieces meet at x = +-3)

Built from `torch.where` so autograd and inductor see plain elementwise ops that fuse into one kernel. The other
variants (naive, custom autograd, Triton) register next to this one.
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


@register("fastswish")
class FastSwish(nn.Module):
    """FastSwish via torch.where: no parameters, fusable by torch.compile."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fastswish_reference(x)
