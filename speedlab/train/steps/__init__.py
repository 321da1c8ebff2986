"""Step variants, one module each in this package, registered by name and chosen by `trainer.step`.

A variant is a class decorated with `@register("name")` with:

- `check(cfg)`: combinations no machine can run with this step (a `TrainingJobCfg`), refused at composition with
  what to set instead;
- `check_device(cfg, device, distributed)`: what this machine (or a torchrun launch) cannot run, as `UnsupportedHere`
  or `SpeedlabError`, before any data is loaded;
- `optimizer(module, cfg)`: the optimizer whose state checkpoints hold (torch.optim.AdamW's format for every variant,
  so a checkpoint moves between variants);
- `build(trainer, cfg)`: the `Step` the trainer calls;
- `label`: what the summary's "Changes" column says (None for the by-the-book step).

A `Step` runs one optimiser step (`step(x, y, lr)` returns the loss as a device tensor, no host sync) and lists the
phases `profile` times apart (`phases(x, y, lr)`: each phase a name and a function of the previous phase's result).
Adding a variant is adding its file; the tests parametrize over `names()`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch

from speedlab.plugins import Registry

Phase = tuple[str, Callable[[Any], Any]]


class Step(Protocol):
    def __call__(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor: ...

    def phases(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> list[Phase]: ...


class Variant(Protocol):
    label: str | None

    def check(self, cfg: Any) -> None: ...

    def check_device(self, cfg: Any, device: torch.device, distributed: bool) -> None: ...

    def optimizer(self, module: torch.nn.Module, cfg: Any) -> Any: ...

    def build(self, trainer: Any, cfg: Any) -> Step: ...


_REGISTRY = Registry("step variant", __name__, __path__)
register = _REGISTRY.register
names = _REGISTRY.names


def variant(name: str) -> Variant:
    """The registered variant `name` (an unknown one raises SpeedlabError naming the valid ones)."""
    return _REGISTRY.get(str(name))
