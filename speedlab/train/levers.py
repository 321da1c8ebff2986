"""The speed levers of a training run: AMP, compile, channels_last, cuDNN/TF32 flags, the optimizer, and the
overhead levers of small networks (threads, the functional whole step, a compiled optimizer step, CUDA graphs,
memory reuse).

Ranges and combinations no machine can run are refused at composition (the schemas' `__post_init__`, each step
variant's `check`); `check_device` refuses what this machine cannot run, naming the key, the value and what to use
instead, before any data is loaded; nothing is ever silently swapped for something else. The other functions apply
one lever each.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import math
import os
import platform
from collections.abc import Callable

import torch
from torch import nn

from speedlab import models
from speedlab.config import AmpCfg, CompileCfg, OptimCfg, TrainerCfg, TrainingJobCfg
from speedlab.data.spec import DataSpec
from speedlab.device import UnsupportedHere
from speedlab.errors import SpeedlabError
from speedlab.train import steps

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
DEFAULT_THREADS = torch.get_num_threads()  # torch's own choice at start-up, restored for runs that set none


def cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_device(cfg: TrainingJobCfg, device: torch.device, spec: DataSpec, distributed: bool = False) -> list[str]:
    """Refuse what `device` (or the data's shape, or a torchrun launch) cannot run; return notes on settings that
    run but do less here than on a GPU. Range checks happened at composition (the schemas' `__post_init__`)."""
    cuda = device.type == "cuda"
    steps.variant(cfg.trainer.step).check_device(cfg, device, distributed)
    if cfg.trainer.channels_last and not spec.is_image:
        raise SpeedlabError(
            f"trainer.channels_last=true needs image inputs (channels x height x width); data={cfg.data.name} gives "
            f"{spec.input_shape}"
        )
    if cfg.amp.enabled and cfg.amp.dtype == "fp16" and not cuda:
        raise UnsupportedHere(
            "amp.dtype=fp16 needs a CUDA GPU (fp16 autocast with GradScaler); on the CPU use amp.dtype=bf16"
        )
    if cfg.amp.enabled and cfg.amp.dtype == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise UnsupportedHere(f"amp.dtype=bf16: {torch.cuda.get_device_name(device)} has no bf16; use amp.dtype=fp16")
    for key, on in (("trainer.cudnn_benchmark", cfg.trainer.cudnn_benchmark), ("trainer.tf32", cfg.trainer.tf32)):
        if on and not cuda:
            raise UnsupportedHere(f"{key}=true needs CUDA (it is a cuDNN/cuBLAS flag); this run is on {device.type}")
    if cfg.trainer.reuse_memory and glibc() is None:
        raise UnsupportedHere("trainer.reuse_memory=true needs glibc's mallopt; this system's C library is not glibc")
    if cfg.trainer.threads is not None and cfg.trainer.threads > cores():
        raise UnsupportedHere(
            f"trainer.threads={cfg.trainer.threads}: this machine lets the run use {cores()} cores; choose 1 to "
            f"{cores()} (more threads than cores only queue behind each other)"
        )
    notes = []
    if cfg.compile.enabled and cfg.compile.mode == "reduce-overhead" and not cuda:
        notes.append("compile.mode=reduce-overhead: CUDA graphs need a GPU; on the CPU it compiles like `default`")
    if str(cfg.data.feed) == "loader" and getattr(cfg.data, "pin_memory", False) and not cuda:
        notes.append("data.pin_memory=true has no effect without CUDA")
    return notes


def apply_backend_flags(cfg: TrainerCfg, device: torch.device) -> None:
    """Set (not just enable) the process-wide flags, so runs of one sweep never inherit each other's."""
    cuda = device.type == "cuda"
    torch.backends.cudnn.benchmark = cuda and cfg.cudnn_benchmark
    torch.backends.cuda.matmul.allow_tf32 = cuda and cfg.tf32
    torch.backends.cudnn.allow_tf32 = cuda and cfg.tf32
    torch.set_float32_matmul_precision("high" if cuda and cfg.tf32 else "highest")
    torch.set_num_threads(cfg.threads or DEFAULT_THREADS)
    torch.backends.mkldnn.enabled = cfg.onednn
    if cfg.reuse_memory:
        keep_freed_memory()


# glibc's mallopt parameters: blocks above M_MMAP_THRESHOLD get their own mapping, returned to the OS on free;
# free memory above M_TRIM_THRESHOLD at the heap's top is returned too. Both high: freed memory stays for reuse.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
KEEP_UP_TO = 1 << 30


def glibc() -> ctypes.CDLL | None:
    """The C library, when it is glibc (whose mallopt the reuse_memory lever sets); None elsewhere."""
    if platform.libc_ver()[0] != "glibc":
        return None
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def keep_freed_memory() -> None:
    """Large allocations from the heap, and no trimming: the CPU counterpart of a caching allocator. Without it, a
    10,000 x 32 float temporary (1.3 MB) is mmapped, page-faulted and zeroed afresh each step (glibc raises its
    threshold on its own only after a while, which showed as steps getting faster during a run)."""
    libc = glibc()
    if libc is None or not (libc.mallopt(M_MMAP_THRESHOLD, KEEP_UP_TO) and libc.mallopt(M_TRIM_THRESHOLD, KEEP_UP_TO)):
        raise UnsupportedHere("trainer.reuse_memory=true needs glibc's mallopt, which this system does not offer")


def autocast(cfg: AmpCfg, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    """A factory of the forward pass's autocast context (a no-op context when AMP is off)."""
    if not cfg.enabled:
        return contextlib.nullcontext
    dtype = AMP_DTYPES[str(cfg.dtype)]
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(cfg: AmpCfg, device: torch.device) -> torch.amp.GradScaler | None:
    """fp16 needs loss scaling against gradient underflow; bf16 has fp32's range and needs none."""
    if cfg.enabled and cfg.dtype == "fp16":
        return torch.amp.GradScaler(device.type)
    return None


def param_groups(module: nn.Module, weight_decay: float) -> list[tuple[list[tuple[str, nn.Parameter]], float]]:
    """(named parameters, weight decay) per group: decay on weights, none on norms, biases and layer scales (1-d),
    as in the ConvNeXt recipe. Every step variant's optimizer shares it, so their states line up."""
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    return [([(n, p) for n, p in named if p.ndim > 1], weight_decay), ([(n, p) for n, p in named if p.ndim <= 1], 0.0)]


def optimizer(model: nn.Module, cfg: OptimCfg, lr_tensor: bool = False) -> torch.optim.AdamW:
    """AdamW with no weight decay on norms, biases and layer scales. `lr_tensor`: the learning rate as a tensor, so a
    compiled optimizer step does not recompile each time the schedule changes it."""
    grouped = param_groups(model, cfg.weight_decay)
    groups = [{"params": [p for _, p in named], "weight_decay": decay} for named, decay in grouped]
    device = next(model.parameters()).device
    lr = torch.tensor(cfg.lr, device=device) if lr_tensor else cfg.lr
    return torch.optim.AdamW(groups, lr=lr, fused=cfg.fused, foreach=cfg.foreach)


def learning_rate(cfg: OptimCfg, step: int, total_steps: int) -> float:
    """The learning rate at optimiser step `step` (0-based): a pure function of the step, so a resumed run
    continues the exact schedule without scheduler state."""
    warm = min(cfg.lr_warmup_steps, total_steps)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    if cfg.schedule == "constant":
        return cfg.lr
    progress = (step - warm) / max(1, total_steps - warm)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def compiled(model: nn.Module, cfg: CompileCfg) -> nn.Module:
    if not cfg.enabled:
        return model
    return torch.compile(model, mode=str(cfg.mode), fullgraph=cfg.fullgraph, dynamic=cfg.dynamic)


def changes_label(cfg: TrainingJobCfg) -> str:
    """The reference table's "Changes" column: the levers this run pulls, or "Vanilla"."""
    parts = []
    if cfg.compile.enabled:
        parts.append("TC" if cfg.compile.mode == "default" else f"TC ({cfg.compile.mode})")
    if cfg.amp.enabled:
        parts.append(f"AMP ({cfg.amp.dtype})")
    if cfg.trainer.channels_last:
        parts.append("channels_last")
    if cfg.optim.fused:
        parts.append("fused AdamW")
    elif cfg.optim.foreach:
        parts.append("foreach AdamW")
    if cfg.trainer.cudnn_benchmark:
        parts.append("cudnn.benchmark")
    if cfg.trainer.tf32:
        parts.append("TF32")
    parts += _overhead_labels(cfg)
    model = models.label(cfg.model)
    if model:
        parts.append(model)
    return " + ".join(parts) or "Vanilla"


def _overhead_labels(cfg: TrainingJobCfg) -> list[str]:
    step_label = steps.variant(cfg.trainer.step).label
    parts = [step_label] if step_label else []
    if cfg.trainer.threads is not None:
        parts.append(f"{cfg.trainer.threads} thread{'s' if cfg.trainer.threads > 1 else ''}")
    if cfg.trainer.reuse_memory:
        parts.append("reused memory")
    if not cfg.trainer.onednn:
        parts.append("oneDNN off")
    if str(cfg.data.feed) == "loader":
        parts.append("DataLoader")
    return parts
