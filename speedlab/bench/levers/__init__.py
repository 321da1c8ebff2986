"""Inference levers: model-side transforms a torch-run bench cell applies, in the order `bench.levers` lists them
(torchtitan's model-converter idea), one module each, registered by name.

A lever is a class registered with `@register("name")` with:

- `backends`: the backends it changes (those that run the PyTorch module in this process: eager, inductor); the
  others run their own artifact as it is, and their rows record no lever;
- `needs(spec, precisions)`: why this lever cannot work for the sweep (image inputs, a half precision), or None;
- `applies(precision)`: whether it changes a cell of this precision (half weights: bf16/fp16 cells only);
- `apply(model, inputs, precision)`: the transformed (model, inputs), never changing the model it was given;
- `context()`: the context the forward pass runs in (None: the default `torch.no_grad()`);
- `replaces_autocast`: True when the cell then runs without autocast (the weights already are in its dtype).

`prepare(names, setup, backend, precision, inputs)` applies a cell's levers and says which it applied. Adding a
lever is adding its file; the tests parametrize over `names()`.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

from speedlab.bench.precision import autocast
from speedlab.data.spec import DataSpec
from speedlab.errors import SpeedlabError
from speedlab.plugins import Registry


class Lever(Protocol):
    backends: tuple[str, ...]
    replaces_autocast: bool

    def needs(self, spec: DataSpec, precisions: Sequence[str]) -> str | None: ...

    def applies(self, precision: str) -> bool: ...

    def apply(self, model: nn.Module, inputs: torch.Tensor, precision: str) -> tuple[nn.Module, torch.Tensor]: ...

    def context(self) -> Callable[[], contextlib.AbstractContextManager] | None: ...


_REGISTRY = Registry("bench lever", __name__, __path__)
register = _REGISTRY.register
names = _REGISTRY.names


def get(name: str) -> Lever:
    return _REGISTRY.get(name)


def check(requested: Sequence[str], backends: Sequence[str], spec: DataSpec | None, precisions: Sequence[str]) -> None:
    """Refuse, before any cell runs, a lever no backend of the sweep would apply (it would change nothing, silently)
    and one the sweep's data or precisions cannot take; each error names the lever and what would take it."""
    for name in requested:
        lever = get(name)
        if not set(lever.backends) & set(backends):
            raise SpeedlabError(f"bench.levers: {name} changes how {', '.join(lever.backends)} run the PyTorch model; "
                                f"this sweep runs {', '.join(backends)}, which would ignore it (add one of "
                                f"{', '.join(lever.backends)} to bench.backends, or drop the lever)")  # fmt: skip
        why = lever.needs(spec, precisions) if spec is not None else None
        if why:
            raise SpeedlabError(f"bench.levers: {name} {why}")


@dataclass
class Applied:
    """A cell's model and inputs after its levers, how its forward pass runs, and which levers it applied."""

    model: nn.Module
    inputs: torch.Tensor
    autocast: bool = True
    context: Callable[[], contextlib.AbstractContextManager] = torch.no_grad
    names: list[str] = field(default_factory=list)

    def scope(self, device: torch.device, precision: str) -> contextlib.ExitStack:
        """What the cell's forward pass runs in: its grad mode, and autocast unless its weights are half already."""
        stack = contextlib.ExitStack()
        stack.enter_context(self.context())
        if self.autocast:
            stack.enter_context(autocast(device, precision))
        return stack


def prepare(requested: Sequence[str], model: nn.Module, inputs: torch.Tensor, backend: str,
            precision: str) -> Applied:  # fmt: skip
    """Apply the levers `backend` takes for a `precision` cell, in order, to a copy of `model` (when any applies)."""
    chosen = [(n, get(n)) for n in requested if backend in get(n).backends and get(n).applies(precision)]
    applied = Applied(copy.deepcopy(model) if chosen else model, inputs)
    for name, lever in chosen:
        applied.model, applied.inputs = lever.apply(applied.model, applied.inputs, precision)
        applied.autocast = applied.autocast and not lever.replaces_autocast
        applied.context = lever.context() or applied.context
        applied.names.append(name)
    return applied
