"""speedlab from Python, for notebooks and scripts: the commands as functions, on the same code path as the CLI.

    import torch, speedlab
    result = speedlab.bench(model, torch.randn(8, 3, 64, 64), backends=["eager", "onnxruntime"], batch_sizes=[1, 8])
    result["rows"][1]["p50_ms"]

Each function composes the command's config exactly as the command line would (`overrides` are command-line
overrides; keyword options are the command's own section, e.g. `min_time_s=0.2` is `bench.min_time_s=0.2`), runs the
command's own `run` in a fresh run directory, and returns its result.json as a dict. Bad input raises
`speedlab.errors.SpeedlabError` with the message the CLI prints.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from speedlab import cli, record
from speedlab.config import RunContext
from speedlab.data.spec import DataSpec
from speedlab.errors import SpeedlabError


def _value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_value(v) for v in value) + "]"
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _overrides(section: str, options: dict[str, Any], lists: dict[str, Sequence[Any] | None]) -> list[str]:
    out = [f"{section}.{key}={_value(value)}" for key, value in lists.items() if value is not None]
    return out + [f"{section}.{key}={_value(value)}" for key, value in options.items()]


def spec_of(model: nn.Module, example_inputs: torch.Tensor) -> DataSpec:
    """What `example_inputs` (a batch: first dimension the batch) declare: one sample's shape and dtype; for integer
    inputs, ids below the largest seen + 1 (or the model's first embedding's rows, if larger)."""
    if not isinstance(example_inputs, torch.Tensor) or example_inputs.dim() < 1:
        raise SpeedlabError(f"example_inputs: give a tensor whose first dimension is the batch, not "
                            f"{type(example_inputs).__name__}")  # fmt: skip
    dtype = str(example_inputs.dtype).removeprefix("torch.")
    high = None
    if not example_inputs.dtype.is_floating_point:
        embeddings = [m.num_embeddings for m in model.modules() if isinstance(m, nn.Embedding)]
        high = max([int(example_inputs.max()) + 1, *embeddings[:1]])
    with torch.no_grad():
        out = model.eval()(example_inputs[:1])
    outputs = out.shape[-1] if isinstance(out, torch.Tensor) and out.dim() > 1 else 1
    return DataSpec("classification", tuple(example_inputs.shape[1:]), int(outputs), input_dtype=dtype,
                    input_high=high)  # fmt: skip


def bench(
    model: nn.Module,
    example_inputs: torch.Tensor,
    *,
    backends: Sequence[str] | None = ("eager", "onnxruntime"),
    batch_sizes: Sequence[int] | None = None,
    precisions: Sequence[str] | None = None,
    name: str = "python",
    overrides: Sequence[str] = (),
    **options: Any,
) -> dict[str, Any]:
    """Inference latency of `model` across backends x batch sizes x precisions, as `speedlab bench` measures it.

    `example_inputs` is an example batch (first dimension the batch, as pytorch-benchmark takes it): each cell gets
    inputs of its shape and dtype at its batch size (standard normal floats, or ids in range). `batch_sizes`
    defaults to the example's own size. Returns the run's result.json as a dict: `rows`, one per cell, each with
    `backend`, `precision`, `batch_size`, `status`, `p50_ms` and the rest; `result["run_dir"]` is where it lies."""
    sizes = batch_sizes if batch_sizes is not None else [len(example_inputs)]
    argv = [f"name={name}", *_overrides("bench", options, {"backends": backends, "batch_sizes": sizes,
                                                           "precisions": precisions}), *overrides]  # fmt: skip
    job, resolved = cli.compose_resolved("bench", argv)
    if job.weights or job.source:
        raise SpeedlabError("speedlab.bench(model, ...) benches the model given: drop weights= and source=")
    spec = spec_of(model, example_inputs)
    from speedlab.bench import command

    return _run(command.run, "bench", job, resolved, argv, given=(model, spec))


def train(*overrides: str) -> dict[str, Any]:
    """`speedlab train OVERRIDES...` in a child process (training sets process-wide state: threads, compile caches,
    signal handlers); returns its result.json as a dict, or raises SpeedlabError with the command's error."""
    return _child("train", overrides)


def export(*overrides: str) -> dict[str, Any]:
    """`speedlab export OVERRIDES...` in a child process; returns its result.json as a dict."""
    return _child("export", overrides)


def _run(task: Any, command: str, job: Any, resolved: dict[str, Any], argv: list[str], **kwargs: Any) -> dict:
    run_dir = record.new_run_dir(f"{command}-{job.name}")
    ctx = RunContext(cfg=job, resolved=resolved, run_dir=run_dir, overrides=tuple(argv))
    task(ctx, **kwargs)
    return {**json.loads(record.result_path(run_dir).read_text()), "run_dir": str(run_dir)}


def _child(command: str, overrides: Sequence[str]) -> dict[str, Any]:
    cli.compose(command, list(overrides))  # bad input fails here, before a process starts
    run_dir = record.new_run_dir(f"{command}-api")
    argv = [sys.executable, "-m", "speedlab", command, *overrides, f"hydra.run.dir={run_dir}"]
    done = subprocess.run(argv, capture_output=True, text=True)
    result = record.result_path(run_dir)
    if not result.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise SpeedlabError(f"speedlab {command} failed (exit {done.returncode}):\n" + "\n".join(tail))
    return {**json.loads(Path(result).read_text()), "run_dir": str(run_dir), "returncode": done.returncode}
