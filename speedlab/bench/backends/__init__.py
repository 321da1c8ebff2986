"""Inference backends, one module each, registered by name: `names()`, `create(name)`.

A backend turns the model into something callable for one batch shape and precision. Its protocol is small:

- `unsupported(setup, precision)`: why this backend cannot run that precision here (a string), or None;
- `prepare(setup, batch_size, precision)`: a `Prepared` whose `run()` does one inference on inputs already on the
  device, plus what preparing cost (`setup_s`: compilation, session creation or engine build).

Every module in this package is imported on first use, and its `@register("name")` adds it: adding a backend is
adding a file.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from speedlab.config import SpeedlabCfg
from speedlab.data.spec import DataSpec


@dataclass
class BenchSetup:
    """What every backend may use: the eager fp32 model (eval mode, on `device`; never moved), the config, what the
    data declares (input shape), and a directory for artifacts it makes (ONNX files, engines). `shared` lets a
    backend keep work across cells (an exported file)."""

    model: nn.Module
    cfg: SpeedlabCfg
    device: torch.device
    spec: DataSpec
    work_dir: Path
    shared: dict[str, Any] = field(default_factory=dict)

    def inputs(self, batch_size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """A batch of standard-normal inputs (what normalised data looks like) in the data's shape."""
        generator = torch.Generator().manual_seed(batch_size)
        samples = torch.randn(batch_size, *self.spec.input_shape, generator=generator, dtype=dtype)
        return samples.to(self.device)


@dataclass
class Prepared:
    run: Callable[[], object]  # one inference, work finished on return (the timer synchronises CUDA itself)
    setup_s: float
    notes: dict[str, Any] = field(default_factory=dict)  # e.g. the provider, the artifact used
    frames_compiled: Callable[[], int] | None = None  # Dynamo frames compiled so far, for recompiles


class Backend(Protocol):
    name: str

    def unsupported(self, setup: BenchSetup, precision: str) -> str | None: ...

    def prepare(self, setup: BenchSetup, batch_size: int, precision: str) -> Prepared: ...


_REGISTRY: dict[str, Callable[[], Backend]] = {}
_LOADED = False


def register(name: str) -> Callable[[Callable[[], Backend]], Callable[[], Backend]]:
    def decorator(factory: Callable[[], Backend]) -> Callable[[], Backend]:
        if name in _REGISTRY:
            raise ValueError(f"backend {name!r} is registered twice")
        _REGISTRY[name] = factory
        return factory

    return decorator


def _load() -> None:
    global _LOADED
    if not _LOADED:
        for module in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{module.name}")
        _LOADED = True


def names() -> list[str]:
    _load()
    return list(_REGISTRY)


def create(name: str) -> Backend:
    _load()
    if name not in _REGISTRY:
        raise KeyError(name)
    return _REGISTRY[name]()
