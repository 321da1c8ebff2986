"""Judging two loss trajectories and two sets of final weights: identical, equivalent or diverged.

Pure functions over plain numbers and state dicts, so the verdict logic is tested without training anything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from speedlab import tables

# Largest relative loss difference, per compute dtype, that still counts as "equivalent". fp32: a reordered sum
# (compiled vs eager kernels) moves a loss by ~1e-7 relative per step, and training amplifies it slowly; 1e-4 leaves
# room for a few hundred steps of that. fp16 keeps 11 bits of mantissa, bf16 8: their rounding alone is 5e-4 / 4e-3
# per op, so their limits are set at the scale a correct run reaches.
TOLERANCES = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 3e-2}
# Losses near zero (a regression that has converged) would make any relative difference huge: below this the
# difference is judged as absolute.
LOSS_FLOOR = 1e-3
VERDICTS = ("identical", "equivalent", "diverged")


def tolerance_for(dtypes: Sequence[str]) -> float:
    """The looser of the sides' compute dtypes' tolerances."""
    unknown = [d for d in dtypes if d not in TOLERANCES]
    if unknown:
        raise ValueError(f"no parity tolerance for dtype(s) {unknown}; known: {', '.join(TOLERANCES)}")
    return max(TOLERANCES[d] for d in dtypes)


def relative_difference(a: float, b: float) -> float:
    """|a - b| / max(|a|, |b|, LOSS_FLOOR); infinite when either is not finite (a NaN loss is never a match)."""
    if not (math.isfinite(a) and math.isfinite(b)):
        return 0.0 if a == b else math.inf
    return abs(a - b) / max(abs(a), abs(b), LOSS_FLOOR)


def epoch_table(losses_a: Sequence[float], losses_b: Sequence[float], steps_per_epoch: int) -> list[dict[str, Any]]:
    """The reference study's table: each epoch's mean loss on both sides and their difference."""
    rows = []
    for start in range(0, len(losses_a), steps_per_epoch):
        a = losses_a[start : start + steps_per_epoch]
        b = losses_b[start : start + steps_per_epoch]
        mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
        rows.append({"epoch": len(rows) + 1, "steps": len(a), "loss_a": mean_a, "loss_b": mean_b,
                     "difference": abs(mean_a - mean_b)})  # fmt: skip
    return rows


def weights_difference(state_a: dict[str, torch.Tensor], state_b: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Relative L2 difference of the floating-point entries, ||A - B|| / ||A||, and whether every entry is bitwise
    equal; `comparable` is False (and the figures None) when the two state dicts differ in keys or shapes."""
    if state_a.keys() != state_b.keys() or any(state_a[k].shape != state_b[k].shape for k in state_a):
        return {"comparable": False, "relative": None, "bitwise_equal": False}
    diff_sq = norm_sq = 0.0
    equal = True
    for key, a in state_a.items():
        b = state_b[key]
        equal = equal and torch.equal(a.cpu(), b.cpu())
        if a.is_floating_point():
            a64, b64 = a.detach().double().cpu(), b.detach().double().cpu()
            diff_sq += float((a64 - b64).pow(2).sum())
            norm_sq += float(a64.pow(2).sum())
    relative = math.sqrt(diff_sq) / math.sqrt(norm_sq) if norm_sq > 0 else math.sqrt(diff_sq)
    return {"comparable": True, "relative": relative, "bitwise_equal": equal}


def judge(
    losses_a: Sequence[float], losses_b: Sequence[float], weights: dict[str, Any], tolerance: float
) -> dict[str, Any]:
    """The verdict over a whole comparison, with the figures it rests on.

    identical: every step's loss and every final weight bitwise equal. equivalent: every step's relative loss
    difference within `tolerance`. diverged: otherwise, from the first step past it (1-based).
    """
    if len(losses_a) != len(losses_b):
        raise ValueError(f"{len(losses_a)} losses for A and {len(losses_b)} for B: the sides must take the same steps")
    rel = [relative_difference(a, b) for a, b in zip(losses_a, losses_b, strict=True)]
    absolute = [abs(a - b) for a, b in zip(losses_a, losses_b, strict=True)]
    first_over = next((i + 1 for i, r in enumerate(rel) if r > tolerance), None)
    worst = max(range(len(rel)), key=rel.__getitem__) if rel else None
    same_losses = all(a == b for a, b in zip(losses_a, losses_b, strict=True))
    if same_losses and weights.get("bitwise_equal"):
        verdict, why = "identical", "every loss and every final weight bitwise equal"
    elif first_over is None:
        verdict = "equivalent"
        why = f"every step's relative loss difference within {tolerance:g}"
    else:
        verdict = "diverged"
        why = f"step {first_over}: relative loss difference {rel[first_over - 1]:.3g} > {tolerance:g}"
    return {
        "verdict": verdict,
        "why": why,
        "tolerance": tolerance,
        "steps": len(rel),
        "max_abs_difference": max(absolute, default=0.0),
        "max_rel_difference": max(rel, default=0.0),
        "worst_step": worst + 1 if worst is not None else None,
        "first_step_over_tolerance": first_over,
        "final_weights": weights,
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    """The per-epoch table."""
    lines = [[str(r["epoch"]), f"{r['loss_a']:.8g}", f"{r['loss_b']:.8g}", f"{r['difference']:.3g}"] for r in rows]
    return tables.markdown(["Epoch", "Loss A", "Loss B", "Difference"], lines, right=[True] * 4)
