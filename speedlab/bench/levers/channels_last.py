"""`channels_last`: the model's weights and the input batch in NHWC memory order, which oneDNN's and cuDNN's
convolutions prefer (train's `trainer.channels_last`, for inference)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from speedlab.bench.levers import register
from speedlab.data.spec import DataSpec


@register("channels_last")
class ChannelsLast:
    backends = ("eager", "inductor")
    replaces_autocast = False

    def needs(self, spec: DataSpec, precisions: Sequence[str]) -> str | None:
        return None if spec.is_image else f"needs image inputs (channels x height x width), not {spec.input_shape}"

    def applies(self, precision: str) -> bool:
        return True

    def apply(self, model: nn.Module, inputs: torch.Tensor, precision: str) -> tuple[nn.Module, torch.Tensor]:
        return model.to(memory_format=torch.channels_last), inputs.contiguous(memory_format=torch.channels_last)

    def context(self):
        return None
