"""`inference_mode`: the forward pass under `torch.inference_mode()` instead of `torch.no_grad()`: tensors skip
autograd's version counters and view tracking, which saves per-op overhead on small models."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from speedlab.bench.levers import register
from speedlab.data.spec import DataSpec


@register("inference_mode")
class InferenceMode:
    backends = ("eager", "inductor")
    replaces_autocast = False

    def needs(self, spec: DataSpec, precisions: Sequence[str]) -> str | None:
        return None

    def applies(self, precision: str) -> bool:
        return True

    def apply(self, model: nn.Module, inputs: torch.Tensor, precision: str) -> tuple[nn.Module, torch.Tensor]:
        return model, inputs

    def context(self):
        return torch.inference_mode
