"""Export formats, one module each in this package, registered by name (`export.formats` chooses among them).

A format is a class decorated with `@register("name")` with:

- `source`: the format it is built from (None for ONNX fp32, which comes straight from the PyTorch model);
- `precisions(cfg)`: the precisions one export builds (fp32; int8; one engine per TensorRT precision);
- `unavailable()`: why nothing of this format can be built on this machine (e.g. no TensorRT), or None;
- `build(request) -> Path`: the artifact, written atomically into `request.directory`;
- `runner(path, device)`: a callable from a batch of inputs (a host array) to the outputs (a host array), which the
  shared parity check (`speedlab.export.parity`) and the bench backends run.

Adding a format is adding its file; the tests parametrize over `names()`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from speedlab.config import ExportCfg
from speedlab.plugins import Registry

Runner = Callable[[np.ndarray], np.ndarray]


@dataclass
class BuildRequest:
    """What a format needs to build one artifact: the eager model (eval mode, CPU), an example batch of the data's
    shape, the export settings, where to write, calibration batches (INT8), the artifact it is built from, and the
    batch range an engine must cover."""

    model: torch.nn.Module
    example: torch.Tensor
    cfg: ExportCfg
    directory: Path
    precision: str = "fp32"
    source: Path | None = None
    calibration: Callable[[], Any] | None = None  # a fresh iterator of input batches (host arrays)
    batch_range: tuple[int, int] = (1, 64)
    extra: dict[str, Any] = field(default_factory=dict)  # what the build recorded (e.g. calibration images)


class Format(Protocol):
    source: str | None

    def precisions(self, cfg: ExportCfg) -> list[str]: ...

    def unavailable(self) -> str | None: ...

    def build(self, request: BuildRequest) -> Path: ...

    def runner(self, path: Path, device: torch.device) -> Runner: ...


_REGISTRY = Registry("export format", __name__, __path__)
register = _REGISTRY.register
names = _REGISTRY.names


def get(name: str) -> Format:
    """The registered format `name` (an unknown one raises SpeedlabError naming the valid ones)."""
    return _REGISTRY.get(name)
