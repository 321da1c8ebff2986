"""A parity run's plot: both loss curves over the steps, and their relative difference against the tolerance."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402

from speedlab.fsutil import atomic_path  # noqa: E402
from speedlab.parity.verdict import relative_difference  # noqa: E402


def losses(a: Sequence[float], b: Sequence[float], tolerance: float, label_a: str, label_b: str, out: Path) -> Path:
    steps = range(1, len(a) + 1)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, height_ratios=[3, 2])
    top.plot(steps, a, label=label_a, color="#4C72B0")
    top.plot(steps, b, label=label_b, color="#DD8452", linestyle="--")
    top.set_ylabel("training loss")
    top.legend(fontsize=8)
    # Exact matches would vanish on a log scale: they are drawn at a floor and said so.
    floor = 1e-12
    rel = [max(relative_difference(x, y), floor) for x, y in zip(a, b, strict=True)]
    bottom.plot(steps, rel, color="#55A868")
    bottom.axhline(tolerance, color="#C44E52", linestyle=":", label=f"tolerance {tolerance:g}")
    bottom.set_yscale("log")
    bottom.set_ylabel(f"relative difference\n(exact: {floor:g})")
    bottom.set_xlabel("step")
    bottom.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return out
