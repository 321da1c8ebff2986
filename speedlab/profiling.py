"""`python -m speedlab profile [overrides]`: where a training step's and an inference's time goes, op by op.

Runs `profile.steps` of train's own step (the trainer `speedlab.train.builder` builds: the configured family and
levers, compile, AMP with its GradScaler, channels_last, the task's loss) on random inputs of the data's declared
shape and `trainer.batch_size`, after `profile.warmup` untimed steps, profiling the forward pass and the backward
pass (with the optimizer step) separately, then `profile.steps` inference forwards. Prints and records one table
per phase (`torch.profiler` key_averages: op, calls, total and average time, % of the phase; CPU time, plus CUDA
time on a GPU) and saves a Chrome trace of a few whole steps (a bounded schedule keeps it small).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, schedule

from speedlab import config, device, models, record
from speedlab.config import RunContext, SpeedlabCfg
from speedlab.data.build import describe
from speedlab.data.spec import DataSpec
from speedlab.device import synchronize
from speedlab.errors import SpeedlabError
from speedlab.fsutil import atomic_path
from speedlab.train import levers
from speedlab.train.builder import build_trainer

PHASES = ("forward", "backward", "inference")
# Kineto (the profiler's engine) logs every session's start and stop to stderr, and on a CPU-only machine an ERROR
# that no GPU was found: noise around the tables. It reads this level when a profiler first starts; 6 is above all
# of its levels. A user's own KINETO_LOG_LEVEL wins.
KINETO_QUIET_LEVEL = "6"


def main(argv: Sequence[str]) -> int:
    return config.run_command("profile", argv, run)


def run(ctx: RunContext) -> int:
    cfg = ctx.cfg
    with record.recording(ctx.run_dir, "profile", ctx.resolved) as rec:
        spec = _check(cfg)
        where = device.resolve(cfg.device)
        levers.check_device(cfg, where, spec)
        levers.apply_backend_flags(cfg.trainer, where)
        rec.refresh_flags()
        os.environ.setdefault("KINETO_LOG_LEVEL", KINETO_QUIET_LEVEL)
        trainer = build_trainer(cfg, spec, where)
        inputs, targets = _batch(spec, cfg.trainer.batch_size, where)
        activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if where.type == "cuda" else [])]

        def forward() -> torch.Tensor:
            return trainer.forward_loss(inputs, targets)

        def infer() -> None:
            with torch.no_grad():
                trainer.forward_loss(inputs, targets)

        label = levers.changes_label(cfg)
        print(f"profiling {label} at batch {cfg.trainer.batch_size} ({spec.describe()}) on {where} ...", flush=True)
        for _ in range(cfg.profile.warmup):  # compilation and first-call costs stay out of the tables
            trainer.backward_step(forward())
            infer()
        tables = _phase_tables(forward, trainer.backward_step, infer, cfg.profile.steps, activities, where)
        trace = record.trace_path(ctx.run_dir)
        _chrome_trace(lambda: trainer.backward_step(forward()), activities, trace, where)
        rec.update({"changes": label, "family": cfg.model.name, "batch_size": cfg.trainer.batch_size,
                    "device": str(where), "input_shape": [None, *spec.input_shape], "steps": cfg.profile.steps,
                    "tables": tables, "trace": str(trace)})  # fmt: skip
        cuda = where.type == "cuda"
        for phase in PHASES:
            print(f"\n{phase} ({cfg.profile.steps} steps, top {cfg.profile.top} ops by self time)")
            print(markdown(tables[phase], cfg.profile.top, cuda=cuda))
        print(f"\nChrome trace: {trace} (open in chrome://tracing or https://ui.perfetto.dev)\nresult: {rec.path}")
    return 0


def _batch(spec: DataSpec, batch: int, where: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Random inputs of the data's shape and targets of its task (class indices or regression values)."""
    inputs = torch.randn(batch, *spec.input_shape, device=where)
    if spec.task == "classification":
        return inputs, torch.randint(0, spec.num_outputs, (batch,), device=where)
    return inputs, torch.randn(batch, spec.num_outputs, device=where)


def _check(cfg: SpeedlabCfg) -> DataSpec:
    for key in ("steps", "top"):
        if getattr(cfg.profile, key) < 1:
            raise SpeedlabError(f"profile.{key}={getattr(cfg.profile, key)}: must be at least 1")
    if cfg.profile.warmup < 0:
        raise SpeedlabError(f"profile.warmup={cfg.profile.warmup}: must be 0 or more")
    levers.check_values(cfg)
    if str(cfg.trainer.step) == "functional":
        raise SpeedlabError(
            "trainer.step=functional: profile times the forward and the backward of the module step apart, and the "
            "functional step is one function; profile with trainer.step=module (make bench-small times both steps)"
        )
    spec = describe(cfg.data)
    models.check(cfg.model, spec)
    return spec


def _phase_tables(forward, backward, infer, steps: int, activities, where) -> dict[str, list[dict[str, Any]]]:
    """Forward and backward of each training step in separate profiler sessions, so each op lands in its phase."""
    sessions = {phase: [] for phase in PHASES}
    for _ in range(steps):
        with profile(activities=activities) as prof:
            loss = forward()
            synchronize(where)
        sessions["forward"].append(prof)
        with profile(activities=activities) as prof:
            backward(loss)
            synchronize(where)
        sessions["backward"].append(prof)
        with profile(activities=activities) as prof:
            infer()
            synchronize(where)
        sessions["inference"].append(prof)
    return {phase: _table(profs, steps) for phase, profs in sessions.items()}


def _table(profs: list, steps: int) -> list[dict[str, Any]]:
    """Per op, summed over the sessions: calls, self and total time, and share of the phase (per step)."""
    rows: dict[str, dict[str, float]] = {}
    for prof in profs:
        for event in prof.key_averages():
            empty = {"calls": 0, "self_cpu_us": 0.0, "cpu_total_us": 0.0, "self_cuda_us": 0.0}
            row = rows.setdefault(event.key, empty)
            row["calls"] += event.count
            row["self_cpu_us"] += event.self_cpu_time_total
            row["cpu_total_us"] += event.cpu_time_total
            row["self_cuda_us"] += getattr(event, "self_device_time_total", 0.0)
    phase_us = sum(r["self_cpu_us"] + r["self_cuda_us"] for r in rows.values()) or 1.0
    table = []
    for op, r in rows.items():
        self_us = r["self_cpu_us"] + r["self_cuda_us"]
        table.append({
            "op": op, "calls": int(r["calls"] / steps), "self_ms": self_us / steps / 1e3,
            "avg_us": self_us / max(r["calls"], 1), "share": self_us / phase_us,
            "cpu_self_ms": r["self_cpu_us"] / steps / 1e3, "cpu_total_ms": r["cpu_total_us"] / steps / 1e3,
            "cuda_self_ms": r["self_cuda_us"] / steps / 1e3,
        })  # fmt: skip
    return sorted(table, key=lambda r: r["self_ms"], reverse=True)


def markdown(rows: list[dict[str, Any]], top: int, cuda: bool = False) -> str:
    """The table of a phase; the CUDA column only where a GPU ran (on the CPU it would be all zeros)."""
    head = "| Op | Calls/step | Self time/step | Avg per call | % of phase | CPU self | CPU total |"
    lines = [head + (" CUDA self |" if cuda else ""), "|---|" + "---:|" * (6 + cuda)]
    for r in rows[:top]:
        cuda_cell = f" {r['cuda_self_ms']:.3f} ms |" if cuda else ""
        lines.append(
            f"| {r['op']} | {r['calls']} | {r['self_ms']:.3f} ms | {r['avg_us']:.1f} µs | {r['share']:.1%} "
            f"| {r['cpu_self_ms']:.3f} ms | {r['cpu_total_ms']:.3f} ms |{cuda_cell}"
        )
    return "\n".join(lines)


def _chrome_trace(step: Callable[[], None], activities, path, where) -> None:
    """Three whole training steps after one skipped and one warm-up: enough to read, small enough to open."""
    plan = schedule(wait=1, warmup=1, active=3, repeat=1)

    def save(prof) -> None:
        with atomic_path(path, suffix=".json") as tmp:
            prof.export_chrome_trace(str(tmp))

    with profile(activities=activities, schedule=plan, on_trace_ready=save) as prof:
        for _ in range(5):
            step()
            synchronize(where)
            prof.step()
