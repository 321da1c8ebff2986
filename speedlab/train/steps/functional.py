"""`trainer.step=functional`: the whole training step as one function, for networks where overhead decides.

A by-the-book step is a chain of small framework calls: zero_grad, a forward of module calls, an autograd tape,
backward, and an optimizer looping over parameters. On a 4-32-16-4 MLP those calls, not the arithmetic, take most
of the time. Here the step is written as one pure function: gradients from `torch.func.grad_and_value` over
`functional_call`, and AdamW written out on three flat buffers (parameters, first and second moments), one element
per parameter number. Compiled with `fullgraph=True` it becomes one graph: the matmuls and a few fused loops.

`FlatAdamW` owns the buffers. The module's parameters are re-pointed to views of the flat parameters, so the module
(evaluation, checkpoints, export) always sees the trained weights, and its `state_dict`/`load_state_dict` speak
torch's AdamW format: a checkpoint moves between `trainer.step=module` and `functional` in either direction.

`trainer.step=graphed` (graphed.py) captures this step once as a CUDA graph and replays it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad_and_value

from speedlab.config import CompileCfg, OptimCfg
from speedlab.errors import SpeedlabError
from speedlab.train.levers import param_groups
from speedlab.train.steps import Phase, register

BETAS = (0.9, 0.999)  # torch.optim.AdamW's defaults, which the module step uses too
EPS = 1e-8


class FlatAdamW:
    """AdamW over one flat buffer each for parameters, exp_avg and exp_avg_sq; lr and the step count are tensors,
    so a compiled step never recompiles for a new learning rate."""

    def __init__(self, module: nn.Module, cfg: OptimCfg) -> None:
        groups = param_groups(module, cfg.weight_decay)
        self._groups = [(len(named), decay) for named, decay in groups]
        named = [item for group, _ in groups for item in group]
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        device = named[0][1].device if named else torch.device("cpu")
        with torch.no_grad():
            self.params = torch.cat([p.detach().reshape(-1) for _, p in named])
            offset = 0
            for (_, p), size in zip(named, self.sizes, strict=True):
                # The module keeps its Parameter objects; their storage becomes a slice of the flat buffer.
                p.data = self.params[offset : offset + size].view_as(p)
                offset += size
        self.exp_avg = torch.zeros_like(self.params)
        self.exp_avg_sq = torch.zeros_like(self.params)
        self.decay = torch.cat(
            [torch.full((p.numel(),), decay, device=device) for group, decay in groups for _, p in group]
        )
        self.step_count = torch.zeros((), device=device)
        self.lr = torch.tensor(float(cfg.lr), device=device)
        self.param_groups = [{"lr": self.lr}]  # Trainer.set_lr fills it

    def views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """The module's parameters, by name, as views of `flat`."""
        return {n: v.view(s) for n, v, s in zip(self.names, flat.split(self.sizes), self.shapes, strict=True)}

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Nothing to clear: the functional step never writes `.grad`."""

    def state_dict(self) -> dict[str, Any]:
        """torch.optim.AdamW's format, parameters numbered group by group."""
        avg, sq = self.exp_avg.split(self.sizes), self.exp_avg_sq.split(self.sizes)
        count = float(self.step_count)
        state = {
            i: {"step": torch.tensor(count), "exp_avg": a.view(s).clone(), "exp_avg_sq": q.view(s).clone()}
            for i, (a, q, s) in enumerate(zip(avg, sq, self.shapes, strict=True))
        } if count > 0 else {}  # fmt: skip
        groups, start = [], 0
        for size, decay in self._groups:
            groups.append({
                "lr": float(self.lr), "betas": BETAS, "eps": EPS, "weight_decay": decay, "amsgrad": False,
                "maximize": False, "foreach": None, "capturable": False, "differentiable": False, "fused": None,
                "params": list(range(start, start + size)),
            })  # fmt: skip
            start += size
        return {"state": state, "param_groups": groups}

    @torch.no_grad()
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Copy (in place, so a captured graph or compiled step keeps its buffers) from AdamW's format."""
        state = state_dict["state"]
        if not state:
            self.exp_avg.zero_()
            self.exp_avg_sq.zero_()
            self.step_count.zero_()
            return
        for buffer, key in ((self.exp_avg, "exp_avg"), (self.exp_avg_sq, "exp_avg_sq")):
            for view, i in zip(buffer.split(self.sizes), range(len(self.sizes)), strict=True):
                view.copy_(state[i][key].reshape(-1))
        self.step_count.fill_(float(state[0]["step"]))


def step_function(
    module: nn.Module, optimizer: FlatAdamW, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    autocast: Callable[[], AbstractContextManager],
) -> Callable[..., torch.Tensor]:  # fmt: skip
    """The pure step: gradients of `loss(module(x), y)` in the flat parameters, then AdamW, all in place."""
    b1, b2 = BETAS

    def loss_of(flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with autocast():
            return loss(functional_call(module, optimizer.views(flat), (x,)), y)

    def step(
        p: torch.Tensor, m: torch.Tensor, v: torch.Tensor, decay: torch.Tensor, t: torch.Tensor, lr: torch.Tensor,
        x: torch.Tensor, y: torch.Tensor,
    ) -> torch.Tensor:  # fmt: skip
        grad, value = grad_and_value(loss_of)(p, x, y)
        t.add_(1)
        p.mul_(1 - lr * decay)
        m.lerp_(grad, 1 - b1)
        v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denom = (v.sqrt() / torch.sqrt(1 - b2**t)).add_(EPS)
        p.sub_((lr / (1 - b1**t)) * m / denom)
        return value.detach()

    return step


def compiled(step: Callable[..., torch.Tensor], cfg: CompileCfg) -> Callable[..., torch.Tensor]:
    """`step` compiled whole (fullgraph). Only tensor guards are kept: the function is built once per run around
    fixed hyperparameters, so the guards on globals and the module that Dynamo adds cannot fail, and on a 1 ms step
    they cost about 60 us (measured on the 4-32-16-4 MLP)."""
    options: dict[str, Any] = {"guard_filter_fn": torch.compiler.keep_tensor_guards_unsafe}
    if str(cfg.mode) != "default":
        options.update(torch._inductor.list_mode_options(str(cfg.mode)))  # mode= and options= exclude each other
    return torch.compile(step, fullgraph=True, dynamic=cfg.dynamic, options=options)


class FunctionalStep:
    """Trainer's step for `trainer.step=functional`: `step(x, y, lr)` returns the loss as a device tensor. It is one
    function, so `profile` times it as one phase."""

    def __init__(self, fn: Callable[..., torch.Tensor], optimizer: FlatAdamW) -> None:
        self.fn, self.opt = fn, optimizer

    def __call__(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
        self.opt.lr.fill_(lr)
        o = self.opt
        return self.fn(o.params, o.exp_avg, o.exp_avg_sq, o.decay, o.step_count, o.lr, x, y)

    def phases(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> list[Phase]:
        return [("step", lambda _: self(x, y, lr))]


@register("functional")
class Functional:
    label = "functional step"
    kind: type[FunctionalStep] = FunctionalStep

    def check(self, cfg: Any) -> None:
        name = f"trainer.step={cfg.trainer.step}"
        for key, on in (("optim.fused", cfg.optim.fused), ("optim.foreach", cfg.optim.foreach)):
            if on:
                raise SpeedlabError(
                    f"{key}=true with {name}: the functional step writes AdamW out itself (fused by the compiler "
                    f"when compile.enabled=true); drop {key} or use trainer.step=module"
                )
        if cfg.amp.enabled and str(cfg.amp.dtype) == "fp16":
            raise SpeedlabError(f"amp.dtype=fp16 with {name}: fp16 needs the GradScaler of trainer.step=module; use "
                                "amp.dtype=bf16 or trainer.step=module")  # fmt: skip

    def check_device(self, cfg: Any, device: torch.device, distributed: bool) -> None:
        if distributed:
            raise SpeedlabError(f"trainer.step={cfg.trainer.step} trains in one process (no gradient all-reduce); "
                                "under torchrun use trainer.step=module")  # fmt: skip

    def optimizer(self, module: nn.Module, cfg: Any) -> FlatAdamW:
        return FlatAdamW(module, cfg.optim)

    def build(self, trainer: Any, cfg: Any) -> FunctionalStep:
        step = step_function(trainer.module, trainer.optimizer, trainer.task.loss, trainer.autocast)
        if cfg.compile.enabled:
            step = compiled(step, cfg.compile)
        return self.kind(step, trainer.optimizer)
