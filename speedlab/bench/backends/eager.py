"""`eager`: the PyTorch model as it is, under `torch.no_grad()` (and autocast for bf16/fp16)."""

from __future__ import annotations

import torch

from speedlab.bench.backends import BenchSetup, Prepared, register
from speedlab.bench.precision import autocast, torch_unsupported


@register("eager")
class Eager:
    name = "eager"

    def unsupported(self, setup: BenchSetup, precision: str) -> str | None:
        return torch_unsupported(setup.device, precision)

    def prepare(self, setup: BenchSetup, batch_size: int, precision: str) -> Prepared:
        images = setup.inputs(batch_size)

        def run() -> torch.Tensor:
            with torch.no_grad(), autocast(setup.device, precision):
                return setup.model(images)

        return Prepared(run=run, setup_s=0.0)
