"""DistributedDataParallel set-up for runs started by torchrun: gloo on the CPU, NCCL on GPUs.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them a run is a single process and nothing here does work.
Rank 0 alone logs, checkpoints and writes results; every rank trains on its own shard of the data.
"""

from __future__ import annotations

import gc
import hashlib
import os
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def from_env() -> Dist:
    """This process's place in a torchrun launch (rank 0 of 1 when not launched by torchrun)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return Dist(rank=int(os.environ.get("RANK", "0")), world=world, local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def start(info: Dist, device: torch.device) -> Dist:
    """Join the process group (once per process): NCCL when training on GPUs, gloo on the CPU."""
    if not info.enabled:
        return info
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world)
    return Dist(info.rank, info.world, info.local_rank, backend)


def stop(info: Dist, completed: bool) -> None:
    """Leave the process group. After a completed run, the barrier keeps a rank from tearing its group down while
    another is still in a collective (after a failure it could wait for a rank that never comes, so it is skipped),
    and collecting garbage first frees the DDP reducer, which holds the group, before the group goes. A clean-clone CI
    run once saw rank 1 abort in teardown ("terminate called without an active exception"); it did not recur in 30
    runs, so this is the documented safe order, not a proven fix."""
    if info.enabled and dist.is_initialized():
        if completed:
            dist.barrier()
        gc.collect()
        dist.destroy_process_group()


def wrap(model: nn.Module, info: Dist, device: torch.device) -> nn.Module:
    """DDP over `model` (which broadcasts rank 0's weights to every rank); the model itself when single-process."""
    if not info.enabled:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    # Depthwise conv weights (C, 1, k, k) get gradients whose stride differs from the parameter's only along the
    # size-1 dimension, which is the same memory layout; DDP's check warns about it regardless.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def all_reduce_sum(tensor: torch.Tensor, info: Dist) -> torch.Tensor:
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def gather(obj: Any, info: Dist) -> list[Any]:
    """Every rank's `obj`, in rank order."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world
    dist.all_gather_object(out, obj)
    return out


def weights_digest(model: nn.Module) -> str:
    """SHA-256 of every parameter and buffer's bytes, in state_dict order: equal digests mean identical weights."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        # reshape(-1): 0-d buffers (BatchNorm's num_batches_tracked) cannot be viewed as bytes directly
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
