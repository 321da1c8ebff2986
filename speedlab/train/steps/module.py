"""`trainer.step=module`: the by-the-book step. nn.Module forward under the run's autocast, autograd backward (loss
scaled for fp16), torch.optim.AdamW (fused or foreach as `optim` says)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from speedlab.train import levers
from speedlab.train.steps import Phase, register


class ModuleStep:
    """Forward, backward and update as three calls, which `profile` times apart."""

    def __init__(self, trainer: Any, update: Callable[[], Any] | None = None) -> None:
        self.trainer = trainer
        self._optimizer_step = update or trainer.optimizer.step

    def __call__(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
        loss = self.forward(x, y, lr)
        self.backward(loss)
        self.update()
        return loss.detach()

    def forward(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
        self.trainer.set_lr(lr)
        return self.trainer.forward_loss(x, y)

    def backward(self, loss: torch.Tensor) -> None:
        """Fresh gradients of `loss` (scaled for fp16)."""
        t = self.trainer
        t.optimizer.zero_grad(set_to_none=True)
        (t.scaler.scale(loss) if t.scaler is not None else loss).backward()

    def update(self) -> None:
        """The optimiser update from the gradients `backward` left (unscaled and skipped on overflow for fp16)."""
        scaler = self.trainer.scaler
        if scaler is not None:
            scaler.step(self.trainer.optimizer)
            scaler.update()
        else:
            self._optimizer_step()

    def phases(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> list[Phase]:
        return [("forward", lambda _: self.forward(x, y, lr)), ("backward", self.backward),
                ("optimizer", lambda _: self.update())]  # fmt: skip


@register("module")
class Module:
    label = None

    def check(self, cfg: Any) -> None:
        pass

    def check_device(self, cfg: Any, device: torch.device, distributed: bool) -> None:
        pass

    def optimizer(self, module: torch.nn.Module, cfg: Any) -> torch.optim.AdamW:
        return levers.optimizer(module, cfg.optim)

    def build(self, trainer: Any, cfg: Any) -> ModuleStep:
        return ModuleStep(trainer)
