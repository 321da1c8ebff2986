"""`python -m speedlab train`: train a model with the chosen speed levers and record what each one bought.

Gets its job config (conf/train.yaml + overrides, checked at composition), checks that this machine can run it,
builds data and model, times a warm-up (compilation) on its own, trains epoch by epoch, evaluates, checkpoints
atomically and rewrites result.json every `trainer.eval_every` epochs (and after the last), and ends with a summary
table in the reference study's shape. Under torchrun it trains with DDP.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import activations
from speedlab import checkpoint, device, models, record, roofline, samples, targets
from speedlab.config import RunContext, TrainJob
from speedlab.data.build import build_data, describe
from speedlab.data.loaders import DataBundle
from speedlab.data.spec import DataSpec
from speedlab.fsutil import RecordLines
from speedlab.monitor import PeakMemory, dynamo_frames_compiled
from speedlab.train import distributed, levers, summary
from speedlab.train.builder import build_trainer
from speedlab.train.distributed import Dist
from speedlab.train.loop import Trainer
from speedlab.train.progress import Progress

# Rows of the runs finished in this process: a multirun prints them as one table at the end.
finished_rows: list[dict[str, str]] = []


def print_sweep_summary() -> None:
    """One table of every run this process finished, when it finished more than one (a sweep)."""
    if len(finished_rows) > 1:
        print("\nsweep summary\n" + summary.markdown(finished_rows))


class _NoRecord(dict):
    """What ranks other than 0 record: nothing."""

    def set_status(self, status: str, reason: str | None = None) -> None:
        pass

    def save(self) -> None:
        pass

    def refresh_flags(self) -> None:
        pass


@dataclass
class _Plan:
    """Everything checked before any long work: device, notes and the checkpoint to resume from."""

    device: torch.device
    spec: DataSpec  # what the data declares (before loading; the loaded bundle's spec is checked again)
    notes: list[str] = field(default_factory=list)
    resume_path: Path | None = None
    resume_state: dict[str, Any] | None = None
    model_config: dict[str, Any] = field(default_factory=dict)  # as resolved, for the checkpoint's model check


def _prepare(ctx: RunContext, info: Dist) -> _Plan:
    cfg = ctx.cfg
    spec = describe(cfg.data)
    models.check(cfg.model, spec)
    where = device.resolve(cfg.device, info.local_rank)
    notes = levers.check_device(cfg, where, spec, distributed=info.enabled)
    plan = _Plan(device=where, spec=spec, notes=notes, model_config=ctx.resolved["model"])
    if cfg.resume:
        plan.resume_path = checkpoint.find(cfg.resume, key="resume")
        plan.resume_state = checkpoint.load(plan.resume_path)
        checkpoint.check_model(plan.resume_state, plan.resume_path, plan.model_config, spec)
        plan.notes += _resume_notes(plan.resume_path, int(plan.resume_state["epoch"]))
    return plan


def _resume_notes(checkpoint_file: Path, epoch: int) -> list[str]:
    """What became of the run being resumed, from its result.json (nothing when it has none or it is unreadable)."""
    try:
        result = json.loads(record.result_path(checkpoint_file.parent).read_text())
    except (OSError, ValueError):
        return []
    status = record.status_of(result)
    if status in ("ok", "running"):
        return []
    how = "its process was killed" if status == record.CRASHED else (result.get("reason") or status)
    return [f"resuming a run that {status} ({how}); its checkpoint holds epoch {epoch}, and its result.json every "
            "finished epoch"]  # fmt: skip


def run(ctx: RunContext) -> int:
    info = distributed.from_env()
    if info.is_main:
        recorder = record.recording(ctx.run_dir, "train", ctx.resolved, sweep=ctx.sweep)
    else:
        recorder = nullcontext(_NoRecord())
    with recorder as rec:
        try:
            plan = _prepare(ctx, info)
        except device.UnsupportedHere as err:
            if not ctx.multirun:
                raise
            rec.set_status("skipped", str(err))
            print(f"skipped: {err}")
            finished_rows.append(summary.skipped_row(levers.changes_label(ctx.cfg), str(err)))
            return 0
        info = distributed.start(info, plan.device)
        completed = False
        try:
            _train(ctx, plan, info, rec)
            completed = True
        finally:
            distributed.stop(info, completed)
    return 0


def _train(ctx: RunContext, plan: _Plan, info: Dist, rec: Any) -> None:
    cfg, where = ctx.cfg, plan.device
    progress = Progress(enabled=info.is_main)
    for note in plan.notes:
        progress.line(f"note: {note}")
    levers.apply_backend_flags(cfg.trainer, where)
    rec.refresh_flags()  # result.json's env.flags: this run's, not the previous sweep job's
    torch._dynamo.reset()  # each run of a sweep compiles (and is timed) on its own
    with PeakMemory(where) as memory:
        data = build_data(
            cfg.data, seed=cfg.seed, batch_size=cfg.trainer.batch_size, device=where, rank=info.rank,
            world=info.world,
        )  # fmt: skip
        trainer, start_epoch, history = _build(cfg, plan, data, where, info, progress)
        rec.update(_describe(cfg, trainer, data, info, plan))
        rec["notes"] = plan.notes
        rec["epochs"] = history
        progress.line(
            f"{rec['changes']}: {rec['params']:,} parameters, {data.spec.describe()}, "
            f"{trainer.steps_per_epoch} steps/epoch"
        )
        warm = trainer.warm_up(start_epoch + 1, cfg.trainer.timing_warmup)
        rec.update(warm)
        progress.line(
            f"warm-up: {warm['warmup_steps']} steps in {warm['warmup_time_s']:.1f} s "
            f"(compile and first-call cost {warm['compile_time_s']:.1f} s), undone before epoch {start_epoch + 1}"
        )
        frames_after_warmup = dynamo_frames_compiled()
        progress.start_epochs(start_epoch, cfg.trainer.epochs)
        total, every = cfg.trainer.epochs, cfg.trainer.eval_every
        loop = _LoopClock(first_epoch=start_epoch + 1)
        try:
            for epoch in range(start_epoch + 1, total + 1):
                history.append({"epoch": epoch, **trainer.train_epoch(epoch, total)})
                if epoch % every and epoch != total:
                    progress.tick_epoch()  # bookkeeping waits for the next evaluated epoch
                    continue
                trainer.settle_losses(history)
                history[-1].update(trainer.evaluate(epoch))
                progress.end_epoch(_epoch_line(history[-1], total))
                rec.update(loop.fractions(history))
                with loop.bookkeeping():
                    _finish_epoch(ctx, trainer, history, info, rec, memory, frames_after_warmup, loop.history)
        finally:
            progress.close()
        _finish_run(ctx, rec, trainer, info)


class _LoopClock:
    """Wall time of this run's epoch loop against the time its steps took: how much of a run of many tiny epochs
    goes to training rather than to evaluation, bookkeeping and the loop itself."""

    def __init__(self, first_epoch: int) -> None:
        self.first_epoch, self.start = first_epoch, time.perf_counter()
        self.bookkeeping_s = 0.0  # result.json and checkpoint writes
        self.history = RecordLines()  # the checkpoint's copy of the history, each epoch encoded once

    @contextmanager
    def bookkeeping(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.bookkeeping_s += time.perf_counter() - start

    def fractions(self, history: list[dict[str, Any]]) -> dict[str, float]:
        wall = time.perf_counter() - self.start
        ours = [e for e in history if e["epoch"] >= self.first_epoch]
        train = sum(e["train_time_s"] for e in ours)
        evaluation = sum(e.get("eval_time_s", 0.0) for e in ours)
        return {
            "loop_wall_s": round(wall, 4),
            "train_fraction": round(train / wall, 4) if wall > 0 else None,
            "eval_fraction": round(evaluation / wall, 4) if wall > 0 else None,
            "bookkeeping_fraction": round(self.bookkeeping_s / wall, 4) if wall > 0 else None,
        }


def _build(cfg: TrainJob, plan: _Plan, data: DataBundle, where: torch.device, info: Dist, progress: Progress):
    """The trainer, restored from the checkpoint when resuming, with the epoch to start after and the history."""
    state = plan.resume_state
    if state is not None:
        checkpoint.check_model(state, plan.resume_path, plan.model_config, data.spec)
    resume = (state, plan.resume_path) if state is not None else None
    trainer = build_trainer(cfg, data.spec, where, data=data, dist=info, progress=progress, resume=resume)
    start_epoch, history = 0, []
    if state is not None:
        checkpoint.set_rng_states(state["rng"])
        start_epoch, history = int(state["epoch"]), list(state["history"])
        if start_epoch >= cfg.trainer.epochs:
            progress.line(f"checkpoint already holds {start_epoch} epochs (trainer.epochs={cfg.trainer.epochs})")
    return trainer, start_epoch, history


def _describe(cfg: TrainJob, trainer: Trainer, data: DataBundle, info: Dist, plan: _Plan) -> dict[str, Any]:
    return {
        "name": cfg.name,
        "changes": levers.changes_label(cfg),
        "family": cfg.model.name,
        "task": data.spec.task,
        "metric": trainer.task.metric,
        "activation_implementation": _activation_implementation(cfg, trainer.device),
        "params": models.count_params(trainer.module),
        "device": str(trainer.device),
        "data": data.record(),
        "steps_per_epoch": trainer.steps_per_epoch,
        "global_batch_size": cfg.trainer.batch_size * info.world,
        "distributed": {"world_size": info.world, "backend": info.backend},
        "resumed_from": str(plan.resume_path) if plan.resume_path else None,
        "resumed_at_epoch": int(plan.resume_state["epoch"]) if plan.resume_state else None,
    }


def _activation_implementation(cfg: TrainJob, where: torch.device) -> str | None:
    """Which implementation the activation runs (e.g. Triton or its fallback); None for families that bring their
    own activation (timm, torchvision)."""
    name = models.activation(cfg.model)
    if name is None:
        return None
    dtype = levers.AMP_DTYPES[str(cfg.amp.dtype)] if cfg.amp.enabled else torch.float32
    return activations.implementation(name, where, dtype)


def _epoch_line(e: dict[str, Any], total: int) -> str:
    if "val_acc" in e:
        val = f", top-1 {e['val_acc']:.2f} %, top-5 {e['val_top5']:.2f} %"
    else:  # regression, or the user's loss alone
        val = f", MSE {e['val_mse']:.4g}" if "val_mse" in e else ""
    seconds = e["train_time_s"]
    took = f"{seconds:.2f} s" if seconds >= 0.1 else f"{seconds * 1e3:.2f} ms"
    return (
        f"epoch {e['epoch']}/{total}: train {took} ({e['images_per_s']:,.0f} samples/s), "
        f"loss {e['train_loss']:.4g} | val loss {e['val_loss']:.4g}{val}"
    )


def _finish_epoch(
    ctx: RunContext,
    trainer: Trainer,
    history: list,
    info: Dist,
    rec: Any,
    memory: PeakMemory,
    frames0: int,
    history_lines: RecordLines,
) -> None:
    """Update result.json and write the checkpoint (rank 0), so an interrupted run keeps every finished epoch."""
    if not info.is_main:
        return
    rec.update(_aggregate(history, trainer.task.metric))
    rec["recompiles"] = dynamo_frames_compiled() - frames0
    rec["peak_memory_bytes"], rec["peak_memory_kind"] = memory.peak_bytes(), memory.kind
    rec.save()
    if ctx.cfg.trainer.save_checkpoints:
        checkpoint.save(
            record.checkpoint_path(ctx.run_dir),
            {
                "model": trainer.module.state_dict(),
                "optimizer": trainer.optimizer.state_dict(),
                "scaler": trainer.scaler.state_dict() if trainer.scaler is not None else None,
                "epoch": history[-1]["epoch"],
                "rng": checkpoint.rng_states(),
                "history": history_lines.array(history),
                "model_config": ctx.resolved["model"],
                "data_spec": trainer.data.spec.record(),
                "code": targets.fingerprints(ctx.resolved),  # the user's modules, to spot code changed since
                "config": ctx.resolved,
                "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
        )
        rec["checkpoint"] = str(record.checkpoint_path(ctx.run_dir))


@functools.cache
def _yardstick(where: torch.device, precision: str) -> float | None:
    """Measured once per process and dtype (a sweep's jobs share it): about half a second on a CPU."""
    return roofline.yardstick(where, precision)


def efficiency(cfg: TrainJob, where: torch.device, history: list[dict[str, Any]], world: int) -> dict[str, Any]:
    """Achieved FLOP/s over the run's steady epochs against the matmul yardstick in the run's compute dtype (fp32,
    or the AMP dtype), measured in this process after training."""
    achieved = [e["achieved_flops_per_s"] for e in history if e.get("achieved_flops_per_s")]
    if not achieved:
        return {"mean_achieved_flops_per_s": None, "efficiency": None}
    precision = str(cfg.amp.dtype) if cfg.amp.enabled else "fp32"
    peak = _yardstick(where, precision)
    mean = sum(achieved) / len(achieved)
    return {
        "mean_achieved_flops_per_s": mean,
        "yardstick_precision": precision,
        "yardstick_flops_per_s": peak,
        "efficiency": mean / (peak * world) if peak else None,
    }


def _aggregate(history: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """Run-level numbers. Every epoch is steady: compilation and warm-up were timed and undone beforehand. The
    final validation figures are the last evaluated epoch's."""
    times = [e["train_time_s"] for e in history]
    last = next((e for e in reversed(history) if metric in e), {})
    finals = {f"final_{k}": v for k, v in last.items() if k.startswith("val_")}
    return {
        "mean_epoch_time_s": round(sum(times) / len(times), 6) if times else None,
        "min_epoch_time_s": min(times, default=None),
        "total_train_time_s": round(sum(times), 4),
        "mean_images_per_s": round(sum(e["images_per_s"] for e in history) / len(history), 2) if history else None,
        "final_val_acc": None,  # classification; regression runs have final_val_mse instead
        **finals,
        "final_train_loss": history[-1]["train_loss"] if history else None,
    }


def _write_step_samples(run_dir: Path, step_times: list[tuple[int, list[float]]]) -> dict[str, Any] | None:
    """Every step's time (after the warm-up) and its epoch, to the run's raw-samples file; what result.json says
    about it. None when this run trained no step (a resumed run that was already done)."""
    times = [t for _, epoch_times in step_times for t in epoch_times]
    if not times:
        return None
    epochs = [epoch for epoch, epoch_times in step_times for _ in epoch_times]
    name = samples.write(run_dir, {"train.step_s": times, "train.step_epoch": epochs})
    return {"file": name, "unit": "s", "step_s": "train.step_s", "step_epoch": "train.step_epoch"}


def _finish_run(ctx: RunContext, rec: Any, trainer: Trainer, info: Dist) -> None:
    digests = distributed.gather(distributed.weights_digest(trainer.module), info)
    if not info.is_main:
        return
    rec.update(efficiency(ctx.cfg, trainer.device, rec.data.get("epochs") or [], info.world))
    rec["samples"] = _write_step_samples(ctx.run_dir, trainer.step_times)
    if info.enabled:
        rec["distributed"]["weights_sha256"] = digests
        rec["distributed"]["weights_identical"] = len(set(digests)) == 1
    row = summary.row(rec.data)
    finished_rows.append(row)
    print("\n" + summary.markdown([row]))
    print(f"results: {record.result_path(ctx.run_dir)}")
