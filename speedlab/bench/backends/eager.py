"""`eager`: the PyTorch model as it is, under `torch.no_grad()` (and autocast for bf16/fp16), after the cell's
inference levers (`bench.levers`: channels_last, inference_mode, half_weights)."""

from __future__ import annotations

import torch

from speedlab.bench import levers
from speedlab.bench.backends import BenchSetup, Prepared, register
from speedlab.bench.precision import torch_unsupported


@register("eager")
class Eager:
    name = "eager"

    def unsupported(self, setup: BenchSetup, precision: str) -> str | None:
        return torch_unsupported(setup.device, precision)

    def prepare(self, setup: BenchSetup, batch_size: int, precision: str) -> Prepared:
        cell = levers.prepare(setup.levers, setup.model, setup.inputs(batch_size), self.name, precision)

        def run() -> torch.Tensor:
            with cell.scope(setup.device, precision):
                return cell.model(cell.inputs)

        return Prepared(run=run, setup_s=0.0, notes={"levers": cell.names})
