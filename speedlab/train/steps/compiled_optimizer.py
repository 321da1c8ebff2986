"""`trainer.step=compiled_optimizer`: the module step with its optimizer step compiled by torch.compile (AdamW's loop
over parameters fused into a few kernels). The learning rate is a tensor, so a schedule changing it never
recompiles."""

from __future__ import annotations

from typing import Any

import torch

from speedlab.errors import SpeedlabError
from speedlab.train import levers
from speedlab.train.steps import register
from speedlab.train.steps.module import ModuleStep


@register("compiled_optimizer")
class CompiledOptimizer:
    label = "compiled optimizer"

    def check(self, cfg: Any) -> None:
        if cfg.optim.foreach:
            # torch.optim refuses a tensor learning rate with foreach unless capturable, which needs a GPU's tensors.
            raise SpeedlabError(
                "trainer.step=compiled_optimizer with optim.foreach=true: the compiled step takes the learning rate "
                "as a tensor, which torch's foreach AdamW refuses; drop optim.foreach (the compiler fuses the loop)"
            )

    def check_device(self, cfg: Any, device: torch.device, distributed: bool) -> None:
        pass

    def optimizer(self, module: torch.nn.Module, cfg: Any) -> torch.optim.AdamW:
        return levers.optimizer(module, cfg.optim, lr_tensor=True)

    def build(self, trainer: Any, cfg: Any) -> ModuleStep:
        return ModuleStep(trainer, update=torch.compile(trainer.optimizer.step))
