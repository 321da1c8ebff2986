"""`trainer.step=graphed`: the functional step (functional.py) captured once as a CUDA graph and replayed, so each
step is one launch sequence with no Python in between. GPU only: elsewhere it is refused with the nearest lever."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from speedlab.device import UnsupportedHere
from speedlab.train.steps import register
from speedlab.train.steps.functional import FlatAdamW, Functional, FunctionalStep


class GraphedStep(FunctionalStep):
    """The functional step captured once as a CUDA graph (on its first call) and replayed: inputs are copied into
    static buffers, so one kernel launch sequence runs per step with no Python in between."""

    WARMUP = 3  # eager calls on a side stream before capture, as torch.cuda.graph's documentation asks

    def __init__(self, fn: Callable[..., torch.Tensor], optimizer: FlatAdamW) -> None:
        super().__init__(fn, optimizer)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: tuple[torch.Tensor, torch.Tensor] | None = None
        self.loss: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
        self.opt.lr.fill_(lr)
        if self.graph is None:
            self._capture(x, y)
        sx, sy = self.static
        sx.copy_(x, non_blocking=True)  # the graph reads its inputs from these fixed addresses
        sy.copy_(y, non_blocking=True)
        self.graph.replay()
        return self.loss.clone()

    def _capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        o = self.opt
        # Warm-up and capture change the weights; the trainer's warm-up restores them in place afterwards.
        self.static = (x.clone(), y.clone())
        args = (o.params, o.exp_avg, o.exp_avg_sq, o.decay, o.step_count, o.lr, *self.static)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.WARMUP):
                self.fn(*args)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.loss = self.fn(*args)


@register("graphed")
class Graphed(Functional):
    label = "functional step + CUDA graphs"
    kind = GraphedStep

    def check_device(self, cfg: Any, device: torch.device, distributed: bool) -> None:
        super().check_device(cfg, device, distributed)
        if device.type != "cuda":
            raise UnsupportedHere(
                f"trainer.step=graphed needs a CUDA GPU (it captures the step as a CUDA graph); this run is on "
                f"{device.type}. On the CPU the nearest lever is trainer.step=functional compile.enabled=true"
            )
