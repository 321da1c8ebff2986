"""The training loop: one optimiser step, one epoch, an evaluation pass and the timing warm-up.

Timing is honest: the clock brackets only the epoch's steps, the device is synchronised before each reading (and
never inside the epoch unless a progress bar is on screen), and compilation and first-call costs happen in a
warm-up whose effects on weights, optimizer and RNG are undone. Build one with `speedlab.train.builder`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from speedlab import checkpoint, roofline, stats
from speedlab.data.loaders import DataBundle
from speedlab.device import synchronize
from speedlab.errors import SpeedlabError
from speedlab.monitor import dynamo_frames_compiled, inductor_cache_counts
from speedlab.train import distributed
from speedlab.train.distributed import Dist
from speedlab.train.progress import Progress
from speedlab.train.steps import Step
from speedlab.train.tasks import Task


class StepClock:
    """The time of each step of an epoch (from the end of one to the end of the next, its batch's fetch included),
    without a host sync inside the epoch: a host clock on the CPU, CUDA events on a GPU, read once at the end."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.marks: list[Any] = [self._mark()]

    def _mark(self) -> Any:
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def tick(self) -> None:
        self.marks.append(self._mark())

    def seconds(self) -> list[float]:
        """Each step's seconds (call after the device is synchronised)."""
        pairs = zip(self.marks, self.marks[1:], strict=False)
        if self.cuda:
            return [a.elapsed_time(b) / 1e3 for a, b in pairs]
        return [b - a for a, b in pairs]


@dataclass
class Trainer:
    model: nn.Module  # what runs: possibly compiled and/or DDP-wrapped
    module: nn.Module  # the plain model underneath, whose state_dict checkpoints hold
    optimizer: torch.optim.Optimizer
    data: DataBundle | None  # None: steps on inputs the caller supplies (profile)
    device: torch.device
    task: Task
    autocast: Callable[[], AbstractContextManager]
    lr_at: Callable[[int], float]  # learning rate of a global optimiser step
    scaler: torch.amp.GradScaler | None = None
    channels_last: bool = False
    max_steps: int | None = None
    dist: Dist = field(default_factory=Dist)
    progress: Progress = field(default_factory=lambda: Progress(enabled=False))
    stepper: Step | None = None  # the step variant's step (trainer.step), set by the builder
    step_flops: int | None = None  # one step's forward + backward FLOPs per process, counted in the warm-up
    # Seconds of every step after the warm-up, one array per epoch run here (epoch, times): the raw samples.
    step_times: list[tuple[int, list[float]]] = field(default_factory=list)

    @property
    def steps_per_epoch(self) -> int:
        if self.data is None:
            raise SpeedlabError("this trainer was built without data: it has no epochs")
        return min(len(self.data.train), self.max_steps or len(self.data.train))

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def step(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
        """One optimiser step of the run's step variant; returns the loss as a device tensor (no host sync)."""
        return self.stepper(self._input(x), y, lr)

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor):  # a compiled optimizer's: changed in place, no recompile
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr

    def forward_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The forward pass and the task's loss, under the run's autocast (the module step's first phase, and the
        inference `profile` times under no_grad)."""
        with self.autocast():
            return self.task.loss(self.model(self._input(x)), y)

    def train_epoch(self, epoch: int, total_epochs: int) -> dict[str, Any]:
        """Train one epoch (1-based `epoch`); returns its time, throughput and mean loss over all ranks (the loss
        as a device tensor in a single process: `settle_losses` reads it)."""
        if not self.model.training:  # train() walks every submodule: ~20 us, a percent of a tiny epoch
            self.model.train()
        steps, first_step = self.steps_per_epoch, (epoch - 1) * self.steps_per_epoch
        losses: list[torch.Tensor] = []  # summed once after the clock stops: no extra op inside a step
        images = done = 0
        # Reading the loss syncs the device: only for a progress bar on screen, and then only now and then.
        show_loss = self.progress.interactive
        self.progress.start_batches(epoch, total_epochs, steps)
        synchronize(self.device)
        start = time.perf_counter()
        clock = StepClock(self.device)
        batches = self.data.train.epoch(epoch)
        for i, (x, y) in enumerate(batches):
            if i == steps:
                break
            loss = self.step(x, y, self.lr_at(first_step + i))
            losses.append(loss)
            images += len(y)
            done += 1
            self.progress.step(**({"loss": f"{loss.item():.3f}"} if show_loss and i % 20 == 0 else {}))
            clock.tick()
        synchronize(self.device)
        elapsed = time.perf_counter() - start
        self.step_times.append((epoch, clock.seconds()))
        self.progress.end_batches()
        loss_sum = (
            torch.stack(losses).sum(dtype=torch.float64)
            if losses
            else torch.zeros((), dtype=torch.float64, device=self.device)
        )
        if self.dist.enabled:
            totals = distributed.all_reduce_sum(
                torch.stack([loss_sum, loss_sum.new_tensor(images), loss_sum.new_tensor(done)]), self.dist
            ).tolist()
            mean_loss, images = totals[0] / max(1.0, totals[2]), int(totals[1])
        else:
            # Left on the device: the command reads it with the other pending epochs' at the next bookkeeping
            # epoch, so a run of tiny epochs does not pay a host read per epoch.
            mean_loss = loss_sum / max(1, done)
        achieved = self.step_flops * done * self.dist.world / elapsed if self.step_flops and elapsed > 0 else None
        return {
            "train_time_s": round(elapsed, 6),
            "images_per_s": round(images / elapsed, 2),
            "achieved_flops_per_s": achieved,
            "train_loss": mean_loss,
            "steps": done,
            "images": images,
            "lr_last": self.lr_at(first_step + steps - 1),
        }

    @staticmethod
    def settle_losses(history: list[dict[str, Any]]) -> None:
        """Replace the device-tensor losses of `history` by numbers, with one host read for all of them."""
        pending = [e for e in history if isinstance(e.get("train_loss"), torch.Tensor)]
        if pending:
            for e, value in zip(pending, torch.stack([e["train_loss"] for e in pending]).tolist(), strict=True):
                e["train_loss"] = value

    @torch.no_grad()
    def evaluate(self, epoch: int) -> dict[str, Any]:
        """The task's validation figures (loss, and top-1/top-5 % or MSE), summed over all ranks' shards."""
        self.model.eval()
        sums: torch.Tensor | None = None
        start = time.perf_counter()
        for x, y in self.data.val.epoch(epoch):
            batch = self.task.sums(self._eval_forward(x), y)
            sums = batch if sums is None else sums + batch
        synchronize(self.device)
        elapsed = time.perf_counter() - start
        totals = distributed.all_reduce_sum(sums, self.dist).tolist() if sums is not None else None
        self.model.train()
        if totals is None:
            raise SpeedlabError("the val split is empty: nothing to evaluate (check data.val_size)")
        return {**self.task.figures(totals), "eval_time_s": elapsed}

    def warm_up(self, epoch: int, steps: int) -> dict[str, Any]:
        """Run `steps` training steps and the evaluation shapes once each, timed, then undo their effects.

        The first call of each compiles (torch.compile) or pays first-call costs (allocator, kernels); that excess
        over a steady call is `compile_time_s`. Weights, optimizer, GradScaler and RNG are restored afterwards, so
        the run trains exactly as if the warm-up had not happened.
        """
        saved = self._snapshot()
        frames_before, cache_before = dynamo_frames_compiled(), inductor_cache_counts()
        start = time.perf_counter()
        batches = self.data.train.epoch(epoch)
        x, y = next(iter(batches))
        batches.close()
        train_times = [self._timed(lambda: self.step(x, y, self.lr_at(0))) for _ in range(max(1, steps))]
        self.step_flops = self._count_step_flops(x, y)
        eval_excess = 0.0
        self.model.eval()
        with torch.no_grad():
            vx, _ = next(iter(self.data.val.epoch(epoch)))
            tail = self.data.val.plan.per_rank % self.data.val.plan.batch_size
            for shape_x in (vx, vx[:tail]) if tail else (vx,):
                first, second = (self._timed(lambda s=shape_x: self._eval_forward(s)) for _ in range(2))
                eval_excess += max(0.0, first - second)
        self.model.train()
        self._restore(saved)
        steady = stats.median(train_times[1:]) if len(train_times) > 1 else 0.0
        return {
            "compile_time_s": round(max(0.0, train_times[0] - steady) + eval_excess, 3),
            "warmup_time_s": round(time.perf_counter() - start, 3),
            "warmup_steps": len(train_times),
            "step_flops": self.step_flops,
            "first_step_s": round(train_times[0], 4),
            "steady_step_s": round(steady, 4),
            "frames_compiled": dynamo_frames_compiled() - frames_before,
            "inductor_cache": {k: v - cache_before[k] for k, v in inductor_cache_counts().items()},
        }

    def _count_step_flops(self, x: torch.Tensor, y: torch.Tensor) -> int:
        """FLOPs of one training step's forward and backward on a real batch, counted by `torch.utils.flop_counter`
        on the plain module under the run's autocast (the compiled model runs the same math). Matmuls and
        convolutions count; the optimizer's and other elementwise work, a few percent, does not. Runs inside the
        warm-up, whose restore undoes its gradients, batch-norm statistics and random draws."""

        def forward_backward() -> None:
            with self.autocast():
                loss = self.task.loss(self.module(self._input(x)), y)
            loss.backward()

        flops = roofline.count_flops(forward_backward)
        for param in self.module.parameters():
            param.grad = None
        return flops

    def _eval_forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            return self.model(self._input(x))

    def _timed(self, fn: Callable[[], Any]) -> float:
        synchronize(self.device)
        start = time.perf_counter()
        fn()
        synchronize(self.device)
        return time.perf_counter() - start

    def _snapshot(self) -> dict[str, Any]:
        return {
            "model": copy.deepcopy(self.module.state_dict()),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": checkpoint.rng_states(),
        }

    def _restore(self, saved: dict[str, Any]) -> None:
        self.module.load_state_dict(saved["model"])  # copies in place: compiled graphs keep their parameters
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.scaler is not None:
            self.scaler.load_state_dict(saved["scaler"])
        checkpoint.set_rng_states(saved["rng"])
