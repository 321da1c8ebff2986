"""Artifacts on request: what bench (and any later consumer) asks export for, instead of calling an exporter.

`obtain(model, ...)` returns a format's artifact of a model, built through the format registry (its source first:
INT8 from ONNX fp32, an engine from either), checked once by the shared parity check against the eager model on a
fixed batch of random inputs as the data declares them (`DataSpec.example`), and cached by content under
`artifacts/cache/export/`: the key hashes the model's weights and module tree, the inputs' shape and dtype, the
format, precision and export settings, the batch range an engine covers, the calibration's source, and the library
versions. A second request for the same content costs a
directory lookup. Each entry is built in a temporary directory and renamed into place, so an interrupted build leaves
no entry behind.

`from_run(run_dir, ...)` is the other door: an artifact an export run made (its result.json names each file).
"""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speedlab import config, record
from speedlab.config import ExportCfg
from speedlab.data.spec import DataSpec
from speedlab.errors import SpeedlabError
from speedlab.export import formats, parity
from speedlab.export.formats import BuildRequest
from speedlab.fsutil import atomic_write_json, umask

META_FILE = "artifact.json"
PARITY_BATCH = 8  # random inputs: enough to judge a latency artifact, cheap to run through every runtime


@dataclass
class Obtained:
    """An artifact and what is known about it: parity against the eager model, how long building took (0 when it
    came from the cache or an export run)."""

    format: str
    precision: str
    path: Path
    status: str  # ok | failed (parity or verification; the file is kept and still usable for latency)
    reason: str | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    build_s: float = 0.0
    cached: bool = False
    key: str | None = None

    def notes(self) -> dict[str, Any]:
        """What a bench cell records of the artifact it ran."""
        return {
            "artifact": str(self.path), "artifact_parity": self.status, "artifact_reason": self.reason,
            "artifact_cached": self.cached, "artifact_max_abs_error": self.figures.get("max_abs_error"),
        }  # fmt: skip


def cache_dir() -> Path:
    return record.artifacts_root() / "cache" / "export"


def _versions() -> dict[str, str | None]:
    names = ("torch", "onnx", "onnxruntime", "onnxscript", "tensorrt", "speedlab")  # torch: also AOTInductor's
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def content_key(model: torch.nn.Module, spec: DataSpec, cfg: ExportCfg, fmt: str, precision: str,
                batch_range: tuple[int, int], calibration: str) -> str:  # fmt: skip
    """SHA-256 of everything that decides the artifact's bytes."""
    digest = hashlib.sha256()
    settings = {k: v for k, v in config.plain(cfg).items() if k != "limits"}  # limits judge, they do not build
    inputs = [spec.input_shape, spec.input_dtype, spec.input_high]
    head = {"module": repr(model), "inputs": inputs, "format": fmt, "precision": precision,
            "settings": settings,
            "batch_range": list(batch_range) if getattr(formats.get(fmt), "batch_range_matters", False) else None,
            "calibration": calibration if precision == "int8" else None, "versions": _versions()}  # fmt: skip
    digest.update(json.dumps(head, sort_keys=True, default=str).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def obtain(model: torch.nn.Module, spec: DataSpec, cfg: ExportCfg, fmt: str, precision: str, *,
           batch_range: tuple[int, int], calibration: Callable[[], Iterator[np.ndarray]], calibration_label: str,
           classification: bool, root: Path | None = None) -> Obtained:  # fmt: skip
    """The `fmt` artifact of `model` (eval mode, any device) at `precision`: from the cache, or built, checked and
    cached now. Raises SpeedlabError when the format cannot be built here."""
    form = formats.get(fmt)
    why = form.unavailable()
    if why:
        raise SpeedlabError(f"{fmt} artifacts cannot be built here: {why}")
    root = root or cache_dir()
    cpu_model = model if next(model.parameters()).device.type == "cpu" else copy.deepcopy(model).to("cpu")
    key = content_key(cpu_model, spec, cfg, fmt, precision, batch_range, calibration_label)
    target = root / f"{fmt}-{precision}-{key[:20]}"
    cached = _load(target)
    if cached is not None:
        return cached
    source = form.source(precision)
    source_path = None
    if source is not None:
        source_path = obtain(
            cpu_model, spec, cfg, *source, batch_range=batch_range, calibration=calibration,
            calibration_label=calibration_label, classification=classification, root=root,
        ).path  # fmt: skip
    root.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=root, prefix=f".building-{fmt}-{precision}-"))
    os.chmod(building, 0o777 & ~umask())  # mkdtemp's 0700 would hide the published artifact from the team
    try:
        request = BuildRequest(model=cpu_model, example=spec.example(2), cfg=cfg, directory=building,
                               precision=precision, source=source_path, calibration=calibration,
                               batch_range=batch_range)  # fmt: skip
        start = time.perf_counter()
        path = form.build(request)
        built = Obtained(fmt, precision, path, "ok", build_s=round(time.perf_counter() - start, 3), key=key)
        _check(built, form, cpu_model, spec, cfg, classification, batch_range)
        atomic_write_json(building / META_FILE, {**asdict(built), "path": path.name, "extra": request.extra})
        _publish(building, target)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    built.path = target / path.name
    return built


def _check(built: Obtained, form: Any, model: torch.nn.Module, spec: DataSpec, cfg: ExportCfg,
           classification: bool, batch_range: tuple[int, int]) -> None:  # fmt: skip
    """The shared parity check on a fixed batch of random inputs as the data declares them (standard normal, or ids
    in range), inside the artifact's batch range."""
    problem = form.verify(built.path)
    size = parity_batch_size(form, cfg, batch_range)
    inputs = spec.example(size)
    with torch.no_grad():
        outputs = model(inputs)
    reference = parity.host(outputs)
    classification = classification and isinstance(outputs, torch.Tensor)  # several outputs have no one top-1
    checks = parity.check(form.runners(built.path), [(inputs.numpy(), reference)], classification)
    built.figures, broken = parity.judge(checks, parity.limits_for(built.precision, cfg.limits))
    reason = "; ".join(r for r in (problem, broken) if r)
    if reason:
        built.status, built.reason = "failed", reason


def parity_batch_size(form: Any, cfg: ExportCfg, batch_range: tuple[int, int]) -> int:
    """The batch the cache's parity check runs: PARITY_BATCH, inside the range an engine or package was built for
    (a static package of batch 64 takes 64 only); a static ONNX model's fixed size 2 otherwise."""
    low, high = batch_range
    if getattr(form, "batch_range_matters", False):
        return min(max(PARITY_BATCH, low), high)
    return min(PARITY_BATCH, high) if cfg.dynamic_batch else 2


def _publish(building: Path, target: Path) -> None:
    """Rename the finished build into place; a concurrent builder that got there first wins (same content)."""
    try:
        os.replace(building, target)
    except OSError:
        if not (target / META_FILE).is_file():
            raise


def _load(target: Path) -> Obtained | None:
    try:
        meta = json.loads((target / META_FILE).read_text())
    except (OSError, ValueError):
        return None
    path = target / meta["path"]
    if not path.is_file():
        return None
    fields = {k: meta[k] for k in ("format", "precision", "status", "reason", "figures", "key")}
    return Obtained(path=path, cached=True, **fields)


def from_run(run_dir: Path, fmt: str, precision: str) -> Obtained:
    """The `fmt` artifact at `precision` an export run made, as its result.json records it."""
    result_file = record.result_path(Path(run_dir))
    try:
        result = json.loads(result_file.read_text())
    except (OSError, ValueError) as err:
        raise SpeedlabError(f"bench.export_dir={run_dir}: no readable export result.json there ({err})") from None
    label = formats.get(fmt).file_format
    for entry in result.get("artifacts", []):
        if (entry["format"], entry["precision"]) == (label, precision) and entry.get("path"):
            path = Path(entry["path"])
            if path.is_file():
                figures = {name: entry.get(name) for name in parity.FIGURES}
                return Obtained(fmt, precision, path, entry["status"], entry.get("reason"), figures, cached=True)
    raise SpeedlabError(f"bench.export_dir={run_dir} holds no {label} {precision} artifact (export it there with "
                        f"export.formats including {fmt})")  # fmt: skip
