"""The report's PNG plots (matplotlib, Agg): each function draws its figures into the report directory and returns
the markdown lines that embed them."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker
import numpy as np

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402

from speedlab import samples  # noqa: E402
from speedlab.errors import SpeedlabError  # noqa: E402
from speedlab.fsutil import atomic_path  # noqa: E402


def _save(fig, out: Path, name: str) -> list[str]:
    fig.tight_layout()
    with atomic_path(out / name, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return [f"![{name}]({name})", ""]


def _bars(ax, labels: list[str], values: list[float], fmt: str) -> None:
    bars = ax.barh(labels, values, color="#4C72B0")
    ax.invert_yaxis()
    for bar, value in zip(bars, values, strict=True):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, " " + format(value, fmt), va="center")
    ax.margins(x=0.18)


def training(rows: list[dict[str, Any]], out: Path) -> list[str]:
    """Speed-up bars for the rows that have a Vanilla to compare with (the others are left out, not drawn as 0;
    the table says why) and peak memory for all."""

    def label(r: dict[str, Any]) -> str:
        batch = f"batch {r['batch_size']}, " if r.get("batch_size") else ""
        return f"{r['changes']} ({batch}{r['family']}, {r['params'] / 1e6:.2f}M)"

    compared = [r for r in rows if r["speedup"] is not None]
    measured = [r for r in rows if r["peak_memory_bytes"]]
    if not compared and not measured:
        return []
    panels = [p for p in (compared, measured) if p]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 0.45 * max(map(len, panels)) + 1.6))
    axes = list(axes) if len(panels) > 1 else [axes]
    if compared:
        ax = axes.pop(0)
        _bars(ax, [label(r) for r in compared], [r["speedup"] for r in compared], ".2f")
        ax.axvline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_title("Training speed-up vs vanilla (×, higher is better)")
    if measured:
        ax = axes.pop(0)
        _bars(ax, [label(r) for r in measured], [r["peak_memory_bytes"] / 2**30 for r in measured], ".2f")
        ax.set_title("Peak memory (GiB)")
    return _save(fig, out, "training_speedup_memory.png")


def inference(bench: dict[str, Any], out: Path) -> list[str]:
    stem = Path(bench["_dir"]).name
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in bench["rows"]:
        if r["status"] == "ok" and r.get("concurrency", 1) == 1:  # latency: one request at a time
            series[f"{r['backend']} {r['precision']}"].append((r["batch_size"], r["p50_ms"]))
    if not series:
        return []
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for label, points in series.items():
        points.sort()
        left.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    left.set_xscale("log", base=2)
    left.set_yscale("log")
    left.set_xlabel("batch size")
    left.set_ylabel("p50 latency (ms)")
    left.set_title("Latency against batch size")
    left.grid(True, which="both", alpha=0.3)
    left.legend()
    eager = {b: t for b, t in series.get("eager fp32", [])}
    labels, values = [], []
    for label, points in series.items():
        for batch, ms in points:
            if batch in eager:
                labels.append(f"{label}, batch {batch}")
                values.append(eager[batch] / ms)
    _bars(right, labels, values, ".2f")
    right.axvline(1.0, color="grey", lw=0.8, ls="--")
    right.set_title("Speed-up vs eager fp32 (×)")
    return _save(fig, out, f"inference_{stem}.png")


def concurrency(bench: dict[str, Any], out: Path) -> list[str]:
    """Images per second and p99 latency against the requests in flight (`bench.concurrency`), a line per backend,
    precision and batch size: where more requests stop buying throughput and start costing latency. Nothing for a
    sweep that kept one request in flight."""
    series: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    for r in bench["rows"]:
        if r["status"] == "ok":
            label = f"{r['backend']} {r['precision']}, batch {r['batch_size']}"
            series[label].append((r.get("concurrency", 1), r["throughput_per_s"], r["p99_ms"]))
    series = {k: sorted(v) for k, v in series.items() if len(v) > 1}
    if not any(n > 1 for points in series.values() for n, _, _ in points):
        return []
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for label, points in series.items():
        counts = [p[0] for p in points]
        left.plot(counts, [p[1] for p in points], marker="o", label=label)
        right.plot(counts, [p[2] for p in points], marker="o", label=label)
    for ax, title, unit in ((left, "Throughput", "images/s"), (right, "Tail latency", "p99 latency per request (ms)")):
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
        ax.set_xlabel("requests in flight")
        ax.set_ylabel(unit)
        ax.set_title(f"{title} against requests in flight")
        ax.grid(True, which="both", alpha=0.3)
    left.set_yscale("log")
    right.set_yscale("log")
    left.legend(fontsize=8)
    return _save(fig, out, f"concurrency_{Path(bench['_dir']).name}.png")


def latency_distribution(bench: dict[str, Any], out: Path) -> list[str]:
    """Every timed call of each cell, read back from the run's raw-samples file, as one box per cell (log axis):
    the box spans p25-p75, the whiskers p5-p95, the dots are the calls beyond them. A summary's p50 hides a
    bimodal cell or a slow tail; this shows them. A run without samples (or with an unreadable file) says so."""
    cells = [r for r in bench["rows"] if r["status"] == "ok" and r.get("samples")]
    if not cells:
        return []
    try:
        raw = samples.read(Path(bench["_dir"]))
    except SpeedlabError as err:
        return [f"Latency distribution left out: {err}", ""]
    labels = [f"{r['backend']} {r['precision']}, batch {r['batch_size']}"
              + (f", {r['concurrency']} in flight" if r.get("concurrency", 1) > 1 else "") for r in cells]  # fmt: skip
    calls = [np.concatenate([raw[k] for k in r["samples"]]) for r in cells]
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(cells) + 1.4))
    ax.boxplot(calls, orientation="horizontal", tick_labels=labels, whis=(5, 95), widths=0.6,
               flierprops={"markersize": 2, "alpha": 0.4})  # fmt: skip
    ax.invert_yaxis()
    ax.set_xscale("log")
    plain = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}")  # 0.4, not 4×10⁻¹
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.set_xlabel("latency per call (ms, log scale)")
    ax.set_title(f"Every timed call, per cell (n = {sum(map(len, calls)):,}; box p25-p75, whiskers p5-p95)")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    return _save(fig, out, f"latency_{Path(bench['_dir']).name}.png")


def activations(result: dict[str, Any], out: Path) -> list[str]:
    compiled = [s for s in result.get("speed", []) if s["mode"] == "compiled"]
    memory = result.get("step_memory", [])
    if not compiled or not memory:
        return []
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.4 * len(compiled) + 1.6))
    _bars(left, [s["activation"] for s in compiled], [s["forward_backward"]["p50_ms"] for s in compiled], ".2f")
    left.set_title("Compiled forward + backward, p50 (ms)")
    _bars(right, [m["activation"] for m in memory], [m["bytes"] / 2**20 for m in memory], ".1f")
    right.set_title("Saved for backward in one training step (MiB)")
    return _save(fig, out, "activations.png")


def resources(result: dict[str, Any], out: Path, name: str) -> list[str]:
    """A run's resource timeline (the monitor draws it), embedded in the report."""
    from speedlab.monitor import plot_timeline

    title = f"{result['kind']}: {result.get('changes') or result.get('name', '')}"
    plot_timeline(Path(result["resources"]["timeline"]), out / name, title)
    return [f"![{name}]({name})", ""]
