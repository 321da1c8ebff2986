"""Export formats, one module each in this package, registered by name (`export.formats` chooses among them).

A format is a class decorated with `@register("name")` with:

- `file_format`: what an artifact's entry in result.json calls it (`onnx` for ONNX fp32 and INT8, `tensorrt`);
- `precisions(cfg)`: the precisions one export builds (fp32; int8; one engine per TensorRT precision);
- `source(precision)`: the (format, precision) an artifact is built from, or None (ONNX fp32 comes straight from the
  PyTorch model);
- `unavailable()`: why nothing of this format can be built on this machine (e.g. no TensorRT), or None;
- `build(request) -> Path`: the artifact, written atomically into `request.directory`;
- `verify(path)`: why a built file is unusable beyond parity (e.g. non-standard ONNX ops), or None;
- `batch_range_matters` (optional, False when absent): the artifact covers the request's batch range (an engine's
  profile, a package's batch axis), so the range is part of its cache key;
- `runners(path)`: the runtimes the shared parity check (`speedlab.export.parity.check`) runs it through, by label,
  each a callable from a batch of inputs (a host array) to the outputs (a host array).

The export command and bench (through `speedlab.export.artifacts`) use nothing else of a format. Adding a format is
adding its file; the tests parametrize over `names()`.
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
    batch range an engine must cover. `extra` collects what the build records (calibration images, build time)."""

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
    file_format: str

    def precisions(self, cfg: ExportCfg) -> list[str]: ...

    def source(self, precision: str) -> tuple[str, str] | None: ...

    def unavailable(self) -> str | None: ...

    def build(self, request: BuildRequest) -> Path: ...

    def verify(self, path: Path) -> str | None: ...

    def runners(self, path: Path) -> dict[str, Runner]: ...


_REGISTRY = Registry("export format", __name__, __path__)
register = _REGISTRY.register
names = _REGISTRY.names


def get(name: str) -> Format:
    """The registered format `name` (an unknown one raises SpeedlabError naming the valid ones)."""
    return _REGISTRY.get(name)
