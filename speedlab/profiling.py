"""`python -m speedlab profile [overrides]`: where a training step's and an inference's time goes, op by op.

Runs train's own step (the trainer `speedlab.train.builder` builds: the configured family and levers, compile, AMP
with its GradScaler, channels_last, the task's loss) on random inputs of the data's declared shape and
`trainer.batch_size`, after `profile.warmup` untimed steps. Each phase the step variant lists (the module step:
forward with the loss, backward, optimizer update; the functional and graphed steps: one whole step) and an
inference forward is profiled in its own session over `profile.steps` steps and printed in the reference study's
shape: op, calls x average = total per step, % of the step and of the phase (CPU time, plus CUDA time on a GPU).
Then the step's split by phase plus `other`: how much of an unprofiled step the ops compute and how much is
framework overhead (Python, dispatch, the autograd engine, allocation), the number that explains why small networks
are slow. Saves a Chrome trace of a few whole steps (a bounded schedule).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, schedule

from speedlab import device, models, record, tables
from speedlab.config import RunContext
from speedlab.data.build import describe
from speedlab.data.spec import DataSpec
from speedlab.device import synchronize
from speedlab.fsutil import atomic_path
from speedlab.train import levers
from speedlab.train.builder import build_trainer

INFERENCE = "inference"
# Kineto (the profiler's engine) logs every session's start and stop to stderr, and on a CPU-only machine an ERROR
# that no GPU was found: noise around the tables. It reads this level when a profiler first starts; 6 is above all
# of its levels. A user's own KINETO_LOG_LEVEL wins.
KINETO_QUIET_LEVEL = "6"
# The split's unprofiled steps: a median over fewer would move with every scheduling hiccup.
SPLIT_MIN_STEPS = 20


def run(ctx: RunContext) -> int:
    cfg = ctx.cfg
    with record.recording(ctx.run_dir, "profile", ctx.resolved, sweep=ctx.sweep) as rec:
        spec = describe(cfg.data)
        models.check(cfg.model, spec)
        where = device.resolve(cfg.device)
        levers.check_device(cfg, where, spec)
        levers.apply_backend_flags(cfg.trainer, where)
        rec.refresh_flags()
        os.environ.setdefault("KINETO_LOG_LEVEL", KINETO_QUIET_LEVEL)
        trainer = build_trainer(cfg, spec, where)
        inputs, targets = _batch(spec, cfg.trainer.batch_size, where)
        activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if where.type == "cuda" else [])]

        def step() -> None:
            trainer.step(inputs, targets, cfg.optim.lr)

        label = levers.changes_label(cfg)
        print(f"profiling {label} at batch {cfg.trainer.batch_size} ({spec.describe()}) on {where} ...", flush=True)
        for _ in range(cfg.profile.warmup):  # compilation and first-call costs stay out of the tables
            step()
            _infer(trainer, inputs, targets)
        timed = _timed_phases(trainer, inputs, targets, max(cfg.profile.steps, SPLIT_MIN_STEPS), where)
        tables, profiled = _phase_tables(trainer, inputs, targets, cfg.profile.steps, activities, where)
        split = step_split(tables, profiled, timed, _step_phases(trainer, inputs, targets))
        trace = record.trace_path(ctx.run_dir)
        _chrome_trace(step, activities, trace, where)
        rec.update({"changes": label, "family": cfg.model.name, "batch_size": cfg.trainer.batch_size,
                    "step": str(cfg.trainer.step), "phases": _step_phases(trainer, inputs, targets),
                    "device": str(where), "input_shape": [None, *spec.input_shape], "steps": cfg.profile.steps,
                    "tables": tables, "split": split, "trace": str(trace)})  # fmt: skip
        cuda = where.type == "cuda"
        for phase in tables:
            print(f"\n{phase} ({cfg.profile.steps} steps, top {cfg.profile.top} ops by self time)")
            print(markdown(tables[phase], cfg.profile.top, cuda=cuda))
        print(f"\nwhere a training step's time goes (median of {max(cfg.profile.steps, SPLIT_MIN_STEPS)} unprofiled "
              "steps; the ops' share of each phase from its profile)")  # fmt: skip
        print(split_markdown(split))
        print(f"\nChrome trace: {trace} (open in chrome://tracing or https://ui.perfetto.dev)\nresult: {rec.path}")
    return 0


def _batch(spec: DataSpec, batch: int, where: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Random inputs of the data's shape and targets of its task (class indices or regression values)."""
    inputs = spec.example(batch, device=where)
    if spec.task == "classification":
        return inputs, torch.randint(0, spec.num_outputs, (batch, *spec.target_shape), device=where)
    return inputs, torch.randn(batch, *spec.target_shape, device=where)


def _step_phases(trainer, inputs: torch.Tensor, targets: torch.Tensor) -> list[str]:
    """The phases the run's step variant times apart (e.g. forward, backward, optimizer; or one whole step)."""
    return [name for name, _ in trainer.stepper.phases(inputs, targets, 0.0)]


def _phase_tables(trainer, inputs, targets, steps: int, activities, where) -> tuple[dict[str, list], dict[str, float]]:
    """Each phase of each training step (as the step variant lists them) and an inference in its own profiler
    session, so every op lands in its phase; returns the tables and each phase's profiled wall time."""
    step_phases = _step_phases(trainer, inputs, targets)
    sessions: dict[str, list] = {phase: [] for phase in (*step_phases, INFERENCE)}
    walls = dict.fromkeys(sessions, 0.0)

    def session(phase: str, fn: Callable[[], Any]) -> Any:
        with profile(activities=activities) as prof:
            start = time.perf_counter()
            out = fn()
            synchronize(where)
            walls[phase] += time.perf_counter() - start
        sessions[phase].append(prof)
        return out

    lr = trainer.lr_at(0)
    for _ in range(steps):
        carry = None
        for phase, run_phase in trainer.stepper.phases(trainer._input(inputs), targets, lr):
            carry = session(phase, lambda run_phase=run_phase, carry=carry: run_phase(carry))
        session(INFERENCE, lambda: _infer(trainer, inputs, targets))
    step_us = sum(walls[p] for p in step_phases) / steps * 1e6
    tables = {phase: _table(profs, steps, step_us) for phase, profs in sessions.items()}
    return tables, {p: w / steps * 1e6 for p, w in walls.items()}


def _infer(trainer, inputs: torch.Tensor, targets: torch.Tensor) -> None:
    with torch.no_grad():
        trainer.forward_loss(inputs, targets)


def _table(profs: list, steps: int, step_us: float) -> list[dict[str, Any]]:
    """Per op, summed over the sessions: calls, self and total time, its share of the phase (per step) and of the
    whole profiled training step."""
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
            "op": op, "calls": round(r["calls"] / steps, 2), "self_ms": self_us / steps / 1e3,
            "avg_us": self_us / max(r["calls"], 1), "share": self_us / phase_us,
            "share_of_step": self_us / steps / (step_us or 1.0), "compute": _is_compute(op),
            "cpu_self_ms": r["self_cpu_us"] / steps / 1e3, "cpu_total_ms": r["cpu_total_us"] / steps / 1e3,
            "cuda_self_ms": r["self_cuda_us"] / steps / 1e3,
        })  # fmt: skip
    return sorted(table, key=lambda r: r["self_ms"], reverse=True)


def _is_compute(op: str) -> bool:
    """Whether an event is an op that computes (an ATen op, or a compiled graph's kernels), as opposed to the
    framework around the ops: autograd's engine and nodes, the optimizer's and the profiler's own annotations."""
    return op.startswith(("aten::", "Torch-Compiled Region", "CompiledFunction", "triton_", "cpp_fused", "mkl"))


def _timed_phases(trainer, inputs, targets, steps: int, where) -> dict[str, float]:
    """Wall time per phase of the median unprofiled step (synchronised between phases), in microseconds; the whole
    step's under the key `total`.

    The phases come from the one step whose total is the median, not from a median per phase: medians do not add up,
    and a phase sum above the step's wall would leave `other` negative."""
    steps_us: list[dict[str, float]] = []
    lr = trainer.lr_at(0)
    for _ in range(steps):
        carry, begin = None, time.perf_counter()
        start, step_us = begin, {}
        for phase, run_phase in trainer.stepper.phases(trainer._input(inputs), targets, lr):
            carry = run_phase(carry)
            synchronize(where)
            end = time.perf_counter()
            step_us[phase] = (end - begin) * 1e6
            begin = end
        step_us["total"] = (begin - start) * 1e6
        steps_us.append(step_us)
    return median_step(steps_us)


def median_step(steps_us: Sequence[dict[str, float]]) -> dict[str, float]:
    """The step (phase -> µs, with its `total`) whose total is the median (the lower one of an even count)."""
    ranked = sorted(steps_us, key=lambda step: step["total"])
    return ranked[(len(ranked) - 1) // 2]


def step_split(tables: dict[str, list], profiled_us: dict[str, float], timed_us: dict[str, float],
               phases: Sequence[str]) -> dict[str, Any]:  # fmt: skip
    """The step's split by phase (e.g. forward / backward / optimizer) plus `other`: the time the ops of each phase
    compute, and the rest of the step (Python, dispatch, the autograd engine, allocation) as `other`.

    Each phase's compute share comes from its profiled session (compute ops' self time over the session's wall) and is
    applied to the phase's unprofiled wall time, so the profiler's own cost inflates neither side much.
    """
    parts: dict[str, float] = {}
    for phase in phases:
        compute_us = sum(r["self_ms"] for r in tables[phase] if r["compute"]) * 1e3
        share = min(1.0, compute_us / profiled_us[phase]) if profiled_us[phase] else 0.0
        parts[phase] = share * timed_us[phase]
    step = timed_us["total"]
    parts["other"] = max(0.0, step - sum(parts.values()))
    return {
        "step_us": step,
        "parts_us": parts,
        "shares": {k: v / step for k, v in parts.items()} if step else {},
        "phase_wall_us": {p: timed_us[p] for p in phases},
        "profiled_phase_wall_us": {p: profiled_us[p] for p in phases},
    }


def markdown(rows: list[dict[str, Any]], top: int, cuda: bool = False) -> str:
    """A phase's table in the reference's shape (calls x average = total per step, % of the profiled step), plus
    the share of the phase; the CUDA column only where a GPU ran (on the CPU it would be all zeros)."""
    header = ["Op", "Calls/step", "× Avg per call", "= Total/step", "% of step", "% of phase", "CPU total",
              *(["CUDA self"] if cuda else [])]  # fmt: skip
    lines = [[r["op"], f"{r['calls']:g}", f"{r['avg_us']:.1f} µs", f"{r['self_ms']:.3f} ms",
              f"{r['share_of_step']:.1%}", f"{r['share']:.1%}", f"{r['cpu_total_ms']:.3f} ms",
              *([f"{r['cuda_self_ms']:.3f} ms"] if cuda else [])]
             for r in rows[:top]]  # fmt: skip
    if len(rows) > top:
        rest = rows[top:]
        lines.append([f"({len(rest)} more ops)", "", "", f"{sum(r['self_ms'] for r in rest):.3f} ms",
                      f"{sum(r['share_of_step'] for r in rest):.1%}", f"{sum(r['share'] for r in rest):.1%}", "",
                      *([""] if cuda else [])])  # fmt: skip
    return tables.markdown(header, lines, right=[i > 0 for i in range(len(header))])


def split_markdown(split: dict[str, Any]) -> str:
    labels = {part: f"{part} (ops)" for part in split["parts_us"] if part != "other"}
    labels["other"] = "other: Python, dispatch, autograd engine, allocation"
    lines = [[label, _us(split["parts_us"][part]), f"{split['shares'].get(part, 0.0):.1%}"]
             for part, label in labels.items()]  # fmt: skip
    lines.append(["**step (unprofiled wall)**", _us(split["step_us"]), "100 %"])
    return tables.markdown(["Part of the step", "Time/step", "%"], lines, right=[False, True, True])


def _us(value: float) -> str:
    return f"{value / 1e3:.3f} ms" if value >= 1000 else f"{value:.1f} µs"


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
