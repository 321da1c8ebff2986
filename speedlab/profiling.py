"""`python -m speedlab profile [overrides]`: where a training step's and an inference's time goes, op by op.

Runs `profile.steps` training steps of the configured model and levers (compile, AMP, channels_last) on random
images of `trainer.batch_size`, after `profile.warmup` untimed steps, profiling the forward pass and the backward
pass (with the optimizer step) separately, then `profile.steps` inference forwards. Prints and records one table
per phase (`torch.profiler` key_averages: op, calls, total and average time, % of the phase, CPU and CUDA time) and
saves a Chrome trace of a few whole steps (a bounded schedule keeps it small) in the run directory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile, schedule

from speedlab import config, models, record
from speedlab.config import RunContext, SpeedlabCfg
from speedlab.errors import SpeedlabError
from speedlab.fsutil import atomic_path
from speedlab.train import levers

PHASES = ("forward", "backward", "inference")


def main(argv: Sequence[str]) -> int:
    return config.run_command("profile", argv, run)


def run(ctx: RunContext) -> int:
    cfg = ctx.cfg
    with record.recording(ctx.run_dir, "profile", ctx.resolved) as rec:
        _check(cfg)
        device = levers.resolve_device(cfg.trainer.device, 0)
        levers.check_device(cfg, device)
        torch.manual_seed(cfg.seed)
        module = models.build_model(cfg.model, cfg.data.num_classes).to(device)
        memory_format = torch.channels_last if cfg.trainer.channels_last else torch.contiguous_format
        module = module.to(memory_format=memory_format)
        model = levers.compiled(module, cfg.compile)
        optimizer = levers.optimizer(module, cfg.optim)
        size, batch = cfg.data.resolution, cfg.trainer.batch_size
        images = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=memory_format)
        labels = torch.randint(0, cfg.data.num_classes, (batch,), device=device)
        autocast = levers.autocast(cfg.amp, device)
        activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if device.type == "cuda" else [])]

        def forward() -> torch.Tensor:
            with autocast():
                return F.cross_entropy(model(images), labels)

        def backward(loss: torch.Tensor) -> None:
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        def infer() -> None:
            with torch.no_grad(), autocast():
                model(images)

        print(f"profiling {levers.changes_label(cfg)} at batch {batch}, {size} px on {device} ...", flush=True)
        for _ in range(cfg.profile.warmup):  # compilation and first-call costs stay out of the tables
            backward(forward())
            infer()
        tables = _phase_tables(forward, backward, infer, cfg.profile.steps, activities, device)
        trace = record.artifact_path(ctx.run_dir, "trace", ".json")
        _chrome_trace(lambda: backward(forward()), activities, trace, device)
        rec.update({"changes": levers.changes_label(cfg), "batch_size": batch, "device": str(device),
                    "steps": cfg.profile.steps, "tables": tables, "trace": str(trace)})  # fmt: skip
        for phase in PHASES:
            print(f"\n{phase} ({cfg.profile.steps} steps, top {cfg.profile.top} ops by self time)")
            print(markdown(tables[phase], cfg.profile.top))
        print(f"\nChrome trace: {trace} (open in chrome://tracing or https://ui.perfetto.dev)\nresult: {rec.path}")
    return 0


def _check(cfg: SpeedlabCfg) -> None:
    for key in ("steps", "top"):
        if getattr(cfg.profile, key) < 1:
            raise SpeedlabError(f"profile.{key}={getattr(cfg.profile, key)}: must be at least 1")
    if cfg.profile.warmup < 0:
        raise SpeedlabError(f"profile.warmup={cfg.profile.warmup}: must be 0 or more")
    levers.check_values(cfg)
    models.validate(cfg.model)


def _phase_tables(forward, backward, infer, steps: int, activities, device) -> dict[str, list[dict[str, Any]]]:
    """Forward and backward of each training step in separate profiler sessions, so each op lands in its phase."""
    sessions = {phase: [] for phase in PHASES}
    for _ in range(steps):
        with profile(activities=activities) as prof:
            loss = forward()
            _sync(device)
        sessions["forward"].append(prof)
        with profile(activities=activities) as prof:
            backward(loss)
            _sync(device)
        sessions["backward"].append(prof)
        with profile(activities=activities) as prof:
            infer()
            _sync(device)
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


def markdown(rows: list[dict[str, Any]], top: int) -> str:
    lines = [
        "| Op | Calls/step | Self time/step | Avg per call | % of phase | CPU self | CPU total | CUDA self |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows[:top]:
        lines.append(
            f"| {r['op']} | {r['calls']} | {r['self_ms']:.3f} ms | {r['avg_us']:.1f} µs | {r['share']:.1%} "
            f"| {r['cpu_self_ms']:.3f} ms | {r['cpu_total_ms']:.3f} ms | {r['cuda_self_ms']:.3f} ms |"
        )
    return "\n".join(lines)


def _chrome_trace(step: Callable[[], None], activities, path, device) -> None:
    """Three whole training steps after one skipped and one warm-up: enough to read, small enough to open."""
    plan = schedule(wait=1, warmup=1, active=3, repeat=1)

    def save(prof) -> None:
        with atomic_path(path, suffix=".json") as tmp:
            prof.export_chrome_trace(str(tmp))

    with profile(activities=activities, schedule=plan, on_trace_ready=save) as prof:
        for _ in range(5):
            step()
            _sync(device)
            prof.step()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
