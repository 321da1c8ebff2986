"""PyTorch's own activations, registered under speedlab names."""

from __future__ import annotations

from torch import nn

from activations import register

register("gelu")(nn.GELU)
register("relu")(nn.ReLU)
register("hardswish")(nn.Hardswish)
register("silu")(nn.SiLU)
register("tanh")(nn.Tanh)


@register("gelu_tanh")
def gelu_tanh() -> nn.Module:
    """GELU with the tanh approximation (cheaper than erf on some backends)."""
    return nn.GELU(approximate="tanh")
