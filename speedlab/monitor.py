"""What a run measures besides time: peak memory, the resource monitor's timeline (CPU, memory, GPU) and Dynamo's
compiled frames (shared by every command)."""

from __future__ import annotations

import csv
import os
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import torch

from speedlab import stats


class PeakMemory:
    """Peak memory over a block: `torch.cuda.max_memory_allocated` on a GPU; on the CPU the process's resident set,
    sampled every 20 ms by a thread (ru_maxrss would be the process's lifetime peak, wrong for a sweep's runs)."""

    def __init__(self, device: torch.device, interval_s: float = 0.02) -> None:
        self.device, self.interval_s = device, interval_s
        self.kind = "cuda_max_memory_allocated" if device.type == "cuda" else "process_peak_rss"
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._process = psutil.Process()
            self._peak = self._process.memory_info().rss
            self._thread = threading.Thread(target=self._sample, name="speedlab-rss", daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._peak = max(self._peak, self._process.memory_info().rss)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def peak_bytes(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        self._peak = max(self._peak, self._process.memory_info().rss)
        return self._peak


def dynamo_frames_compiled() -> int:
    """Frames Dynamo has compiled in this process so far (every compile and recompile counts one)."""
    from torch._dynamo.utils import counters

    return int(counters["frames"]["ok"])


def inductor_cache_counts() -> dict[str, int]:
    """Inductor's FX-graph cache hits and misses so far: a warm on-disk cache makes compile time much shorter."""
    from torch._dynamo.utils import counters

    return {
        "hits": int(counters["inductor"]["fxgraph_cache_hit"]),
        "misses": int(counters["inductor"]["fxgraph_cache_miss"]),
    }


# The timeline's columns; the GPU ones stay empty where NVML sees no GPU.
COLUMNS = ("t_s", "process_cpu_pct", "process_rss_bytes", "machine_cpu_pct", "gpu_util_pct", "gpu_memory_used_bytes",
           "gpu_power_w")  # fmt: skip


class _Gpu:
    """NVML's view of the GPU torch uses (utilisation, memory used, power); absent without one or without NVML."""

    def __init__(self) -> None:
        import pynvml  # nvidia-ml-py, a dependency; its import needs no GPU

        self._nvml = pynvml
        pynvml.nvmlInit()
        # NVML numbers every GPU on the machine; torch only the visible ones. The bus id joins the two.
        bus_id = _torch_bus_id()
        self.handle = (pynvml.nvmlDeviceGetHandleByPciBusId(bus_id) if bus_id
                       else pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device()))  # fmt: skip

    def sample(self) -> tuple[float, int, float | None]:
        util = self._nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu
        used = self._nvml.nvmlDeviceGetMemoryInfo(self.handle).used
        try:
            power = self._nvml.nvmlDeviceGetPowerUsage(self.handle) / 1000.0  # milliwatts
        except self._nvml.NVMLError:  # some boards (and MIG slices) do not report power
            power = None
        return float(util), int(used), power

    def close(self) -> None:
        self._nvml.nvmlShutdown()


def _torch_bus_id() -> str | None:
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    bus = getattr(props, "pci_bus_id", None)
    if bus is None:
        return None
    return f"{getattr(props, 'pci_domain_id', 0):08x}:{bus:02x}:{getattr(props, 'pci_device_id', 0):02x}.0"


def _percentile(values: list[float], q: float) -> float:
    """The package's one percentile definition (speedlab.stats), `q` as a fraction."""
    return stats.percentile(values, 100 * q)


class ResourceMonitor:
    """Samples, every `interval_s` in a background thread, the process's CPU % (of all cores) and resident memory,
    the whole machine's CPU %, and on a GPU its utilisation, memory used and power (NVML).

    The thread measures its own CPU time, so every summary states what the sampling cost: `sampler_cpu_fraction`
    is that time over the run's wall time on one core.
    """

    def __init__(self, interval_s: float = 0.5) -> None:
        if not interval_s > 0:
            raise ValueError(f"monitor.interval_s={interval_s}: must be above 0")
        self.interval_s = interval_s
        self.cores = psutil.cpu_count() or 1
        self.rows: list[tuple[Any, ...]] = []
        self.gpu_error: str | None = None
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sampler_cpu_s = 0.0
        self._t0 = 0.0
        self._gpu: _Gpu | None = None

    def start(self) -> ResourceMonitor:
        if torch.cuda.is_available():
            try:
                self._gpu = _Gpu()
            except Exception as err:  # noqa: BLE001 - no NVML in a container: CPU figures still count
                self.gpu_error = f"{type(err).__name__}: {err}"
        self._process.cpu_percent(None)  # both CPU figures are "since the previous call": prime them
        psutil.cpu_percent(None)
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name="speedlab-monitor", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            begin = time.thread_time()
            self._sample()
            self._sampler_cpu_s += time.thread_time() - begin

    def _sample(self) -> None:
        gpu = self._gpu.sample() if self._gpu is not None else (None, None, None)
        self.rows.append((
            round(time.perf_counter() - self._t0, 3),
            # psutil divides CPU time by a wall interval it measures itself: a hair over 100 % can come out
            round(min(100.0, self._process.cpu_percent(None) / self.cores), 1),
            self._process.memory_info().rss,
            psutil.cpu_percent(None),
            *gpu,
        ))  # fmt: skip

    def stop(self) -> None:
        """Stop sampling, with one last sample, so a run shorter than the interval still has its figures."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            self._sample()
        if self._gpu is not None:
            self._gpu.close()
            self._gpu = None

    def summary(self) -> dict[str, Any]:
        """Mean, p95 and peak of each sampled figure, and the sampler's own cost."""
        wall = time.perf_counter() - self._t0
        if not self.rows and self._thread is not None:
            self._sample()  # a save before the first interval ends: one sample now rather than none
        rows = list(self.rows)  # the thread may append meanwhile
        figures = {}
        for index, name in enumerate(COLUMNS[1:], start=1):
            values = [r[index] for r in rows if r[index] is not None]
            if values:
                figures[name] = {"mean": round(sum(values) / len(values), 2), "p95": _percentile(values, 0.95),
                                 "peak": max(values)}  # fmt: skip
        return {
            "interval_s": self.interval_s,
            "samples": len(rows),
            "cores": self.cores,
            "figures": figures,
            "gpu": "nvml" if any(r[4] is not None for r in rows) else (self.gpu_error or "none"),
            "sampler_cpu_s": round(self._sampler_cpu_s, 4),
            "sampler_cpu_fraction": round(self._sampler_cpu_s / wall, 6) if wall > 0 else None,
            "per_sample_us": round(self._sampler_cpu_s / len(rows) * 1e6, 1) if rows else None,
        }

    def timeline_csv(self) -> str:
        lines = [",".join(COLUMNS)]
        lines += [",".join("" if v is None else str(v) for v in row) for row in list(self.rows)]
        return "\n".join(lines) + "\n"


def read_timeline(path: str | os.PathLike) -> dict[str, list[float | None]]:
    """A timeline file as columns (empty cells as None)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {c: [float(r[c]) if r.get(c) not in (None, "") else None for r in rows] for c in COLUMNS}


def plot_timeline(timeline_path: Path, out: Path, title: str) -> Path:
    """A timeline as a PNG: process and machine CPU %, resident memory, and GPU utilisation where it was sampled."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt

    from speedlab.fsutil import atomic_path

    timeline = read_timeline(timeline_path)
    t = timeline["t_s"]
    gpu = any(v is not None for v in timeline["gpu_util_pct"])
    fig, axes = plt.subplots(3 if gpu else 2, 1, figsize=(8, 6 if gpu else 4.5), sharex=True)
    axes[0].plot(t, timeline["process_cpu_pct"], label="this process", color="#4C72B0")
    axes[0].plot(t, timeline["machine_cpu_pct"], label="whole machine", color="#DD8452", alpha=0.8)
    axes[0].set_ylabel("CPU % of all cores")
    axes[0].set_ylim(0, 105)
    axes[0].legend(fontsize=8)
    axes[1].plot(t, [v / 2**30 if v is not None else None for v in timeline["process_rss_bytes"]], color="#55A868")
    axes[1].set_ylabel("resident memory (GiB)")
    if gpu:
        axes[2].plot(t, timeline["gpu_util_pct"], color="#C44E52")
        axes[2].set_ylabel("GPU utilisation %")
    axes[-1].set_xlabel("seconds since the run started")
    axes[0].set_title(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return out
