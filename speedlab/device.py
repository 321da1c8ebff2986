"""Which device a run uses, waiting for its queued work, and "unsupported here" (shared by every command).

`resolve("auto")` picks this rank's GPU when there is one, else the CPU; an explicit CUDA device must exist. A
setting this machine cannot run raises `UnsupportedHere`, which a sweep records as skipped and a single run reports
as an error; nothing is ever swapped for something else silently.
"""

from __future__ import annotations

import logging

import torch

from speedlab.errors import SpeedlabError

VALID = "auto, cpu, cuda, cuda:N"


class UnsupportedHere(SpeedlabError):
    """A valid setting this machine cannot run (a sweep records it as skipped; a single run fails)."""


def resolve(spec: str, local_rank: int = 0, key: str = "device") -> torch.device:
    """The device `spec` names; `key` is the setting's name for the error message."""
    if spec == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise SpeedlabError(f"{key}={spec!r} is not a device; valid: {VALID}") from None
    if device.type not in ("cpu", "cuda"):
        raise SpeedlabError(f"{key}={spec!r}: valid devices are {VALID}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UnsupportedHere(f"{key}={spec}: this machine has no CUDA GPU; use {key}=cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        if device.index >= torch.cuda.device_count():
            raise UnsupportedHere(f"{key}={spec}: only {torch.cuda.device_count()} GPU(s) here")
    return device


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a wall-clock reading covers it (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _DropCudaHomeWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No CUDA runtime is found")


def quiet_cuda_home_warning() -> None:
    """torch.utils.cpp_extension warns "No CUDA runtime is found, using CUDA_HOME=..." on the first compile of any
    CPU-only machine that has a CUDA toolkit installed. It says nothing useful there (the CPU build needs no CUDA
    runtime), so speedlab drops exactly that message; every other warning of the module stays."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    if not any(isinstance(f, _DropCudaHomeWarning) for f in logger.filters):
        logger.addFilter(_DropCudaHomeWarning())
