"""Inference backends, one module each, registered by name: `names()`, `create(name)`.

A backend turns the model into something callable for one batch shape and precision. Its protocol is small:

- `unsupported(setup, precision)`: why this backend cannot run that precision here (a string), or None;
- `prepare(setup, batch_size, precision)`: a `Prepared` whose `run()` does one inference on inputs already on the
  device, plus what preparing cost (`setup_s`: compilation, session creation or engine build).

Every module in this package is imported on first use, and its `@register("name")` adds it (the shared
`speedlab.plugins.Registry`): adding a backend is adding a file. A backend with settings of its own registers their
dataclass too (`@register("name", NameOptions)`, beside the backend): it becomes the `bench.<name>` section.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from speedlab.config import BenchJob, ExportCfg
from speedlab.data.spec import DataSpec
from speedlab.errors import SpeedlabError
from speedlab.plugins import Registry


@dataclass(frozen=True)
class ArtifactSettings:
    """What a backend that runs exported artifacts asks export with: the export settings, the batch range its
    engines must cover (the sweep's sizes), and an export run to take the files from instead (None: export builds
    and caches them)."""

    export: ExportCfg
    batch_range: tuple[int, int]
    export_dir: str | None = None


@dataclass
class BenchSetup:
    """What every backend may use: the eager fp32 model (eval mode, on `device`; never moved), what the data
    declares (input shape), each backend's own options (`bench.<name>`, see `options_for`), how to ask export for
    artifacts, and a directory for files it makes. `shared` lets a backend keep work across cells."""

    model: nn.Module | None  # None: a model file benched as it is (`file`)
    device: torch.device
    spec: DataSpec
    work_dir: Path | None
    options: dict[str, Any] = field(default_factory=dict)
    artifacts: ArtifactSettings | None = None
    shared: dict[str, Any] = field(default_factory=dict)
    file: Any = None  # speedlab.export.files.ModelFile of `bench source=FILE`
    levers: list[str] = field(default_factory=list)  # `bench.levers`, in order (speedlab.bench.levers)

    @classmethod
    def for_job(cls, model: nn.Module | None, job: BenchJob, device: torch.device, spec: DataSpec,
                work_dir: Path | None, file: Any = None) -> BenchSetup:  # fmt: skip
        """The setup of a bench job: each registered backend's options section, and its artifact settings."""
        sizes = job.bench.batch_sizes
        return cls(model, device, spec, work_dir, options={name: getattr(job.bench, name) for name in options()},
                   artifacts=ArtifactSettings(job.export, (min(sizes), max(sizes)), job.bench.export_dir),
                   file=file, levers=list(job.bench.levers))  # fmt: skip

    def file_unsupported(self, backend: Backend, precision: str, batch_size: int) -> str | None:
        """Why a cell cannot run the given model file (`bench source=FILE`), or None when it can."""
        if self.file is None:
            return None
        kinds = getattr(backend, "runs_files", ())
        if self.file.kind not in kinds:
            able = [n for n in names() if self.file.kind in getattr(create(n), "runs_files", ())]
            return f"runs a PyTorch model; source={self.file.path.name} has none (for this file: {', '.join(able)})"
        if precision != "fp32":
            return f"a given file runs as it is, in the cells labelled fp32 (not {precision})"
        if self.file.fixed_batch is not None and batch_size != self.file.fixed_batch:
            return f"{self.file.path.name} takes batch {self.file.fixed_batch} only (its batch axis is fixed)"
        return None

    def options_for(self, backend: str) -> Any:
        """The backend's own options (its dataclass registered beside it)."""
        return self.options[backend]

    def inputs(self, batch_size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """A batch of random inputs as the data declares them (`DataSpec.example`): standard normal in `dtype` for
        float inputs, ids in the declared range for integer inputs (which `dtype` leaves as they are)."""
        return self.spec.example(batch_size, seed=batch_size, device=self.device, float_dtype=dtype)


@dataclass
class Prepared:
    run: Callable[[], object]  # one inference, work finished on return (the timer synchronises CUDA itself)
    setup_s: float
    notes: dict[str, Any] = field(default_factory=dict)  # e.g. the provider, the artifact used
    frames_compiled: Callable[[], int] | None = None  # Dynamo frames compiled so far, for recompiles
    # `n` callables that may run at the same time, one per request in flight (`bench.concurrency`); None: `run`
    # itself is safe to call from several threads at once. Only backends with `concurrent_requests = True` are asked.
    requests: Callable[[int], list[Callable[[], object]]] | None = None

    def concurrent(self, n: int) -> list[Callable[[], object]]:
        """One callable per request in flight."""
        return self.requests(n) if self.requests else [self.run] * n


class Backend(Protocol):
    name: str

    def unsupported(self, setup: BenchSetup, precision: str) -> str | None: ...

    def prepare(self, setup: BenchSetup, batch_size: int, precision: str) -> Prepared: ...

    # Optional: why this machine cannot run `precision` at all (hardware it lacks), checked before any cell when the
    # sweep names the backend itself; in a set (`installed`, `all`) the cell is skipped with `unsupported`'s reason.
    # def refuse(self, setup: BenchSetup, precision: str) -> str | None: ...
    # Optional: True when it serves several requests at once on the CPU (`bench.concurrency` above 1).
    # concurrent_requests: bool
    # Optional: the kinds of model file (`onnx`, `tensorrt`) it runs as they are, for `bench source=FILE`.
    # runs_files: tuple[str, ...]


_REGISTRY = Registry("bench backend", __name__, __path__)
register = _REGISTRY.register
names = _REGISTRY.names


def options() -> dict[str, type]:
    """Each backend's options dataclass (`bench.<name>.*`), for the backends that have one."""
    return {name: _REGISTRY.entry(name).schema for name in names() if _REGISTRY.entry(name).schema is not None}


# `bench.backends` may also name a set: every backend that can run one of the sweep's precisions on this machine and
# device (the default: no rows of a runtime that is not installed), or every registered one (cells that cannot run
# here are recorded as skipped, with the reason).
SETS = {"installed": "the backends that can run here", "all": "every registered backend"}


def choices() -> list[str]:
    """What `bench.backends` accepts: the registered names and the sets."""
    return [*names(), *SETS]


def expand(requested: list[str], setup: BenchSetup, precisions: list[str]) -> list[str]:
    """The backend names a sweep runs, in order, each once: a set replaced by its members."""
    out: list[str] = []
    for name in requested:
        if name == "all":
            out += names()
        elif name == "installed":
            out += [n for n in names() if any(create(n).unsupported(setup, p) is None for p in precisions)]
        else:
            out.append(name)
    return list(dict.fromkeys(out))


def refuse(requested: list[str], setup: BenchSetup, precisions: list[str]) -> None:
    """Refuse a precision a backend named in `bench.backends` cannot run on this machine (SpeedlabError naming
    both, why, and what to drop), before any cell."""
    for name in dict.fromkeys(n for n in requested if n not in SETS):
        backend = create(name)
        check = getattr(backend, "refuse", None)
        why = {p: check(setup, p) for p in precisions if backend.unsupported(setup, "fp32") is None} if check else {}
        bad = {p: w for p, w in why.items() if w}
        if bad:
            precision, reason = next(iter(bad.items()))
            raise SpeedlabError(f"bench.precisions={precisions}: {name} cannot run {precision} here: {reason}. Drop "
                                f"{precision} from bench.precisions, or {name} from bench.backends")  # fmt: skip


def concurrent(name: str) -> bool:
    """Whether the backend serves several requests at once (`bench.concurrency` cells above 1)."""
    return getattr(create(name), "concurrent_requests", False)


def create(name: str) -> Backend:
    """The registered backend `name` (an unknown one raises SpeedlabError naming the valid ones)."""
    return _REGISTRY.get(name)
