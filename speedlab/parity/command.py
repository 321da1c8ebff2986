"""`python -m speedlab parity [shared overrides] --a [A's overrides] --b [B's overrides]`: two training variants,
stepped side by side on identical batches, judged identical, equivalent or diverged.

Both sides are train's own trainer (`speedlab.train.builder`) built from the parity config plus the shared and the
side's overrides. One data bundle feeds both, batch by batch, so the data cannot differ; `parity.copy_weights` starts
B from A's initial weights and `parity.align_rng` gives B's stochastic layers (dropout, drop path) A's random draws
at every step. Every step's loss of both sides is recorded; the result is the reference study's per-epoch table,
the largest difference, the first step past the tolerance, the final weights' relative difference, a verdict and a
plot of both loss curves and their difference.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from speedlab import checkpoint, cli, config, device, models, record
from speedlab.config import ParityJob, RunContext
from speedlab.data.build import build_data, describe
from speedlab.data.spec import DataSpec
from speedlab.errors import SpeedlabError
from speedlab.parity import plots, verdict
from speedlab.train import levers
from speedlab.train.builder import build_trainer
from speedlab.train.loop import Trainer

# What must match for the two sides to see identical batches in the same order.
SAME_BATCHES_KEYS = ("data", "trainer.batch_size", "trainer.epochs", "trainer.max_steps")
# Seed offset of B's own random stream when the stochastic layers are not aligned (the same seed would align them).
UNALIGNED_STREAM = 1_000_003


@dataclass
class Side:
    """One variant: its config, where it runs and, once built, its trainer and random stream."""

    label: str
    overrides: list[str]
    cfg: ParityJob
    resolved: dict[str, Any]
    device: torch.device
    spec: DataSpec
    notes: list[str] = field(default_factory=list)
    trainer: Trainer | None = None
    rng: dict[str, Any] | None = None
    losses: list[float] = field(default_factory=list)

    @property
    def dtype(self) -> str:
        return str(self.cfg.amp.dtype) if self.cfg.amp.enabled else "fp32"

    @property
    def changes(self) -> str:
        return levers.changes_label(self.cfg)

    def describe(self) -> dict[str, Any]:
        return {"overrides": self.overrides, "changes": self.changes, "dtype": self.dtype, "device": str(self.device),
                "seed": self.cfg.seed, "init": str(getattr(self.cfg.model, "init", "n/a")), "notes": self.notes,
                "config": self.resolved}  # fmt: skip


def compose_side(label: str, shared: Sequence[str], own: list[str]) -> tuple[ParityJob, dict[str, Any]]:
    """One side's job config: the shared overrides, then the side's own; bad input names the side."""
    try:
        return cli.compose_resolved("parity", [*shared, *own])
    except SpeedlabError as err:
        raise SpeedlabError(f"side {label} ({' '.join(own) or 'no overrides'}): {err}") from None


def _side(label: str, shared: Sequence[str], own: list[str]) -> Side:
    """A side composed and checked: a value this machine cannot run fails here, naming the side."""
    cfg, resolved = compose_side(label, shared, own)
    try:
        spec = describe(cfg.data)
        models.check(cfg.model, spec)
        where = device.resolve(cfg.device)
        notes = levers.check_device(cfg, where, spec)
    except SpeedlabError as err:
        raise type(err)(f"side {label} ({' '.join(own) or 'no overrides'}): {err}") from None
    return Side(label, own, cfg, resolved, where, spec, notes)


def _lookup(resolved: dict[str, Any], dotted: str) -> Any:
    node: Any = resolved
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def check_pair(a: Side, b: Side) -> None:
    """Refuse two sides that would not see identical batches, naming what differs."""
    differing = [k for k in SAME_BATCHES_KEYS if _lookup(a.resolved, k) != _lookup(b.resolved, k)]
    if differing:
        detail = "; ".join(f"{k}: A {_lookup(a.resolved, k)!r}, B {_lookup(b.resolved, k)!r}" for k in differing)
        raise SpeedlabError(
            f"parity needs identical batches, and the sides differ in {detail}. Set these in the shared overrides "
            "(before --a), not per side"
        )
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise SpeedlabError("parity runs both sides in one process: start it with python, not torchrun")


def copy_weights(source: torch.nn.Module, target: torch.nn.Module) -> None:
    """Load `source`'s state into `target` in place; different keys or shapes fail naming them."""
    src, dst = source.state_dict(), target.state_dict()
    missing = sorted(dst.keys() - src.keys())
    extra = sorted(src.keys() - dst.keys())
    shapes = sorted(f"{k} {tuple(src[k].shape)} vs {tuple(dst[k].shape)}"
                    for k in src.keys() & dst.keys() if src[k].shape != dst[k].shape)  # fmt: skip
    if missing or extra or shapes:
        parts = [f"only in B: {', '.join(missing[:8])}" if missing else "",
                 f"only in A: {', '.join(extra[:8])}" if extra else "",
                 f"shapes differ: {'; '.join(shapes[:8])}" if shapes else ""]  # fmt: skip
        raise SpeedlabError(
            "parity.copy_weights=true, but A's weights do not fit B's model ("
            + "; ".join(p for p in parts if p)
            + "). Compare models of one architecture, or set parity.copy_weights=false"
        )
    target.load_state_dict(src)  # copies into the existing tensors: compiled graphs and flat buffers keep them


def run(ctx: RunContext, sides: tuple[list[str], list[str]]) -> int:
    with record.recording(ctx.run_dir, "parity", ctx.resolved, sweep=ctx.sweep) as rec:
        a, b = (_side(label, ctx.overrides, own) for label, own in zip("AB", sides, strict=True))
        check_pair(a, b)
        opts = ctx.cfg.parity
        tolerance = opts.tolerance if opts.tolerance is not None else verdict.tolerance_for([a.dtype, b.dtype])
        rec.update({"sides": {"a": a.describe(), "b": b.describe()}, "options": config.plain(opts)})
        result = compare(a, b, opts, tolerance)
        plot = plots.losses(a.losses, b.losses, tolerance, f"A: {a.changes}", f"B: {b.changes}",
                            record.parity_plot_path(ctx.run_dir))  # fmt: skip
        rec.update({**result, "plot": str(plot)})
        _print_summary(a, b, result, rec.path)
    return 0


def compare(a: Side, b: Side, opts: Any, tolerance: float) -> dict[str, Any]:
    """Build both trainers, step them in lockstep and judge the result."""
    torch._dynamo.reset()
    data = build_data(a.cfg.data, seed=a.cfg.seed, batch_size=a.cfg.trainer.batch_size, device=a.device)
    for side in (a, b):
        levers.apply_backend_flags(side.cfg.trainer, side.device)
        side.trainer = build_trainer(side.cfg, data.spec, side.device, data=data)
    if opts.copy_weights:
        copy_weights(a.trainer.module, b.trainer.module)
    steps_per_epoch = a.trainer.steps_per_epoch
    total = opts.steps or a.cfg.trainer.epochs * steps_per_epoch
    _lockstep(a, b, data, total, steps_per_epoch, opts.align_rng)
    weights = verdict.weights_difference(a.trainer.module.state_dict(), b.trainer.module.state_dict())
    judged = verdict.judge(a.losses, b.losses, weights, tolerance)
    final_epoch = -(-total // steps_per_epoch)
    evaluation = {s.label: s.trainer.evaluate(final_epoch) for s in (a, b)} if opts.evaluate else None
    return {
        **judged,
        "steps_per_epoch": steps_per_epoch,
        "epochs": verdict.epoch_table(a.losses, b.losses, steps_per_epoch),
        "losses": {"a": a.losses, "b": b.losses},
        "evaluation": evaluation,
    }


def _lockstep(a: Side, b: Side, data: Any, total: int, steps_per_epoch: int, align_rng: bool) -> None:
    """Both sides take each batch in turn. Each side's random draws come from its own stream, which for B is A's
    stream at the same step when aligned; the data's own stream is left as the loaders expect it."""
    outer = checkpoint.rng_states()
    torch.manual_seed(a.cfg.seed)
    a.rng = checkpoint.rng_states()
    torch.manual_seed(b.cfg.seed + UNALIGNED_STREAM)
    b.rng = checkpoint.rng_states()
    checkpoint.set_rng_states(outer)
    flags_differ = _process_flags(a) != _process_flags(b)
    done, epoch = 0, 0
    with tqdm(total=total, desc="parity", unit="step", disable=None, dynamic_ncols=True) as bar:
        while done < total:
            epoch += 1
            for i, (x, y) in enumerate(data.train.epoch(epoch)):
                if i == steps_per_epoch or done == total:
                    break
                data_stream = checkpoint.rng_states()
                start = a.rng
                for side in (a, b):
                    if flags_differ:
                        levers.apply_backend_flags(side.cfg.trainer, side.device)
                    _step(side, x, y, done, start if align_rng or side is a else side.rng)
                checkpoint.set_rng_states(data_stream)
                done += 1
                bar.update(1)
                if done % 10 == 0:
                    bar.set_postfix(loss_a=f"{a.losses[-1]:.4g}", loss_b=f"{b.losses[-1]:.4g}", refresh=False)


def _step(side: Side, x: torch.Tensor, y: torch.Tensor, step: int, rng: dict[str, Any]) -> None:
    checkpoint.set_rng_states(rng)
    x, y = x.to(side.device, non_blocking=True), y.to(side.device, non_blocking=True)
    side.losses.append(float(side.trainer.step(x, y, side.trainer.lr_at(step))))
    side.rng = checkpoint.rng_states()


def _process_flags(side: Side) -> tuple[Any, ...]:
    t = side.cfg.trainer
    return (t.threads, t.tf32, t.cudnn_benchmark, t.onednn, side.device.type)


def _print_summary(a: Side, b: Side, result: dict[str, Any], path: Path) -> None:
    print(f"\nA: {a.changes} ({' '.join(a.overrides) or 'no overrides'}; {a.dtype})")
    print(f"B: {b.changes} ({' '.join(b.overrides) or 'no overrides'}; {b.dtype})")
    print("\n" + verdict.markdown(result["epochs"]))
    w = result["final_weights"]
    weights = (f"final weights differ by {w['relative']:.3g} (relative L2)" if w["comparable"]
               else "final weights not comparable (different architectures)")  # fmt: skip
    print(
        f"\nlargest difference: {result['max_abs_difference']:.3g} absolute, {result['max_rel_difference']:.3g} "
        f"relative (step {result['worst_step']} of {result['steps']}); {weights}"
    )
    if result["evaluation"]:
        for label, figures in result["evaluation"].items():
            shown = ", ".join(f"{k} {v:.4g}" for k, v in figures.items() if k.startswith("val_"))
            print(f"{label} after the last step: {shown}")
    print(f"\nverdict: {result['verdict'].upper()}: {result['why']}\nresult: {path}")
