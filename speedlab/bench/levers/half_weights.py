"""`half_weights`: a bf16 or fp16 cell runs the model with its weights and float inputs in that dtype (`.to(dtype)`),
as a deployment in half precision would, instead of autocast's fp32 weights cast on the fly; fp32 cells are left as
they are. Norms and softmax then compute in half precision too, so parity against fp32 is looser (stated in the
tests)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from speedlab.bench.levers import register
from speedlab.bench.precision import AUTOCAST_DTYPES
from speedlab.data.spec import DataSpec


@register("half_weights")
class HalfWeights:
    backends = ("eager", "inductor")
    replaces_autocast = True

    def needs(self, spec: DataSpec, precisions: Sequence[str]) -> str | None:
        if not set(precisions) & set(AUTOCAST_DTYPES):
            return (f"changes bf16 and fp16 cells only; bench.precisions={list(precisions)} has none "
                    "(add bf16 on the CPU, fp16 or bf16 on a GPU)")  # fmt: skip
        return None

    def applies(self, precision: str) -> bool:
        return precision in AUTOCAST_DTYPES

    def apply(self, model: nn.Module, inputs: torch.Tensor, precision: str) -> tuple[nn.Module, torch.Tensor]:
        dtype = AUTOCAST_DTYPES[precision]
        return model.to(dtype), inputs.to(dtype) if inputs.is_floating_point() else inputs

    def context(self):
        return None
