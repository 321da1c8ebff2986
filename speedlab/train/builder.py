"""Building a `Trainer` from a config: the public way to get exactly train's step (model, levers, optimizer,
GradScaler, loss) for any command that needs one, such as `profile`.

`build_trainer` seeds, builds the model for what the data declares, restores a checkpoint's weights, optimizer and
GradScaler when given one, places the model (channels_last when asked), wraps it in DDP, compiles it, and gives the
trainer the step variant `trainer.step` names (speedlab/train/steps/).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import torch

from speedlab import checkpoint, models
from speedlab.config import TrainingJobCfg
from speedlab.data.loaders import DataBundle
from speedlab.data.spec import DataSpec
from speedlab.errors import SpeedlabError
from speedlab.train import distributed, levers, steps, tasks
from speedlab.train.distributed import Dist
from speedlab.train.loop import Trainer
from speedlab.train.progress import Progress


def build_trainer(
    cfg: TrainingJobCfg,
    spec: DataSpec,
    device: torch.device,
    *,
    data: DataBundle | None = None,
    dist: Dist | None = None,
    progress: Progress | None = None,
    resume: tuple[dict[str, Any], Path] | None = None,
) -> Trainer:
    """A trainer for `cfg` on `device`. Without `data` it steps on inputs the caller supplies, at the constant
    `optim.lr`; `resume` is a loaded checkpoint and its path, whose weights and optimizer state it continues from."""
    dist = dist or Dist()
    torch.manual_seed(cfg.seed)
    module = models.build(cfg.model, spec)
    if resume is not None:
        checkpoint.load_weights(module, resume[0]["model"], resume[1])
    memory_format = torch.channels_last if cfg.trainer.channels_last else torch.contiguous_format
    module.to(device, memory_format=memory_format)
    model = levers.compiled(distributed.wrap(module, dist, device), cfg.compile)
    variant = steps.variant(cfg.trainer.step)
    variant.check_device(cfg, device, dist.enabled)
    optimizer = variant.optimizer(module, cfg)
    scaler = levers.grad_scaler(cfg.amp, device)
    if resume is not None:
        optimizer.load_state_dict(resume[0]["optimizer"])
        if scaler is not None and resume[0].get("scaler"):
            scaler.load_state_dict(resume[0]["scaler"])
    trainer = Trainer(
        model=model, module=module, optimizer=optimizer, data=data, device=device, task=tasks.for_spec(spec, cfg.loss),
        autocast=levers.autocast(cfg.amp, device), lr_at=lambda step: cfg.optim.lr, scaler=scaler,
        channels_last=cfg.trainer.channels_last, max_steps=cfg.trainer.max_steps, dist=dist,
        progress=progress or Progress(enabled=False),
    )  # fmt: skip
    trainer.stepper = variant.build(trainer, cfg)
    if data is not None:
        if trainer.steps_per_epoch < 1:
            raise SpeedlabError(
                f"trainer.batch_size={cfg.trainer.batch_size} is more than the {data.train.plan.per_rank:,} training "
                "samples this process has: no full batch to train on; lower trainer.batch_size"
            )
        total = cfg.trainer.epochs * trainer.steps_per_epoch
        trainer.lr_at = partial(levers.learning_rate, cfg.optim, total_steps=total)
    return trainer
