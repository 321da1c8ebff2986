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
    concurrent_requests = True  # its run is safe to call from several threads at once

    def unsupported(self, setup: BenchSetup, precision: str) -> str | None:
        return torch_unsupported(setup.device, precision)

    def prepare(self, setup: BenchSetup, batch_size: int, precision: str) -> Prepared:
        cell = levers.prepare(setup.levers, setup.model, setup.inputs(batch_size), self.name, precision)

        def run() -> torch.Tensor:
            with cell.scope(setup.device, precision):
                return cell.model(cell.inputs)

        notes = {"levers": cell.names}

        def requests(n: int) -> list:
            # Requests in flight share the cores, as a server's workers do (TorchServe, Triton's instances): each
            # one torch.get_num_threads() // n threads; all of them on every request oversubscribes the cores (on
            # the 2-core AMD EPYC, 2 requests of 2 threads each served 0.62x one request's images per second).
            # torch's thread count is the process's: the bench command restores it after the cell.
            per_request = max(1, torch.get_num_threads() // n)
            torch.set_num_threads(per_request)
            notes["threads_per_request"] = per_request
            return [run] * n

        return Prepared(run=run, setup_s=0.0, notes=notes, requests=requests)
