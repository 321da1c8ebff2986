"""The one parity check of every export format: an artifact's runners against the eager fp32 model's outputs on the
same batches, four figures, and the verdict against the configured limits.

- `max_abs_error`: the largest |candidate - reference| over all logits.
- `max_rel_error`: that error over the largest |reference logit| (elementwise ratios blow up near zero logits).
- `cosine`: the lowest per-image cosine similarity between the two logit vectors.
- `top1_agreement`: the fraction of samples whose top-1 class is the same (classification only; None for
  regression, whose outputs have no classes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from speedlab.config import ArtifactLimits, ExportLimits

FIGURES = ("max_abs_error", "max_rel_error", "cosine", "top1_agreement")
_WORSE_IS_HIGHER = {"max_abs_error": True, "max_rel_error": True, "cosine": False, "top1_agreement": False}


def host(outputs: Any) -> np.ndarray:
    """A model's outputs as one float host array: a tensor as it is; several (a dict, tuple or list of tensors, as
    torch.export flattens them, in that order) each flattened per sample and concatenated to (batch, numbers)."""
    import torch
    from torch.utils._pytree import tree_leaves

    leaves = [t for t in tree_leaves(outputs) if isinstance(t, torch.Tensor)]
    if len(leaves) == 1:
        return leaves[0].detach().float().cpu().numpy()
    return np.concatenate([t.detach().float().cpu().reshape(len(t), -1).numpy() for t in leaves], axis=1)


def joined(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """A runtime's outputs in the form `host` gives the eager model's: one as it is, several flattened and joined."""
    if len(arrays) == 1:
        return arrays[0]
    return np.concatenate([np.asarray(a, dtype=np.float32).reshape(len(a), -1) for a in arrays], axis=1)


def figures(reference: np.ndarray, candidate: np.ndarray, classification: bool = True) -> dict[str, float | None]:
    """The four figures for outputs of shape (batch, ...): cosine per sample over all its numbers; top-1 agreement
    only for (batch, classes) logits of a classification."""
    if reference.shape != candidate.shape:
        raise ValueError(f"output shape {candidate.shape} differs from the reference's {reference.shape}")
    classification = classification and reference.ndim == 2
    ref = reference.astype(np.float64).reshape(len(reference), -1)
    cand = candidate.astype(np.float64).reshape(len(candidate), -1)
    abs_error = float(np.abs(cand - ref).max())
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    cosine = (ref * cand).sum(axis=1) / np.maximum(norms, np.finfo(np.float64).tiny)
    return {
        "max_abs_error": abs_error,
        "max_rel_error": abs_error / max(float(np.abs(ref).max()), np.finfo(np.float64).tiny),
        "cosine": float(cosine.min()),
        "top1_agreement": float((ref.argmax(axis=1) == cand.argmax(axis=1)).mean()) if classification else None,
    }


def worst(results: Sequence[dict[str, float | None]]) -> dict[str, float | None]:
    """The worst of each figure over several checks (batch sizes, providers); None where no check has it."""
    pick = {True: max, False: min}
    out = {}
    for name in FIGURES:
        values = [r[name] for r in results if r.get(name) is not None]
        out[name] = pick[_WORSE_IS_HIGHER[name]](values) if values else None
    return out


def violations(result: dict[str, float], limits: ArtifactLimits) -> list[str]:
    """Each limit the figures break, as readable text; empty when the artifact passes."""
    checks = [
        ("max_abs_error", limits.max_abs_error, True),
        ("max_rel_error", limits.max_rel_error, True),
        ("cosine", limits.min_cosine, False),
        ("top1_agreement", limits.min_top1_agreement, False),
    ]
    broken = []
    for name, limit, upper in checks:
        value = result.get(name)
        if limit is None or value is None:
            continue
        if (value > limit) if upper else (value < limit):
            broken.append(f"{name} {value:.3g} {'>' if upper else '<'} {limit:g}")
    return broken


def onnxruntime_providers() -> list[str]:
    """The providers parity runs through: the CPU always, CUDA when this onnxruntime build and machine have it."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    return ["CPUExecutionProvider", *(p for p in ("CUDAExecutionProvider",) if p in available)]


def onnxruntime_session(path: Path, provider: str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: ORT warns about every unused initializer otherwise
    return ort.InferenceSession(str(path), options, providers=[provider])


def run_session(session, inputs: np.ndarray) -> np.ndarray:
    return joined(session.run(None, {session.get_inputs()[0].name: inputs}))


def limits_for(precision: str, limits: ExportLimits) -> ArtifactLimits:
    """The limits an artifact of `precision` is judged by: fp32, int8, or half (fp16 and bf16)."""
    return {"fp32": limits.fp32, "int8": limits.int8}.get(precision, limits.half)


def check(runners: dict[str, Callable[[np.ndarray], np.ndarray]], batches: Sequence[tuple[np.ndarray, np.ndarray]],
          classification: bool) -> list[dict[str, Any]]:  # fmt: skip
    """The one parity check every format shares: each runner (a runtime or provider, by label) on each
    (inputs, eager reference outputs) batch; one entry of figures per runner and batch size."""
    return [
        {"runtime": label, "batch_size": len(inputs), **figures(reference, run(inputs), classification)}
        for label, run in runners.items()
        for inputs, reference in batches
    ]


def judge(checks: Sequence[dict[str, Any]], limits: ArtifactLimits) -> tuple[dict[str, float | None], str | None]:
    """The worst figures over `checks`, and the broken limits as one reason (None when the artifact passes)."""
    worst_figures = worst(checks)
    broken = violations(worst_figures, limits)
    return worst_figures, ("parity: " + "; ".join(broken)) if broken else None
