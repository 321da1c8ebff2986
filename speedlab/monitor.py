"""What a run measures besides time: peak memory and Dynamo's compiled frames (shared by train and bench)."""

from __future__ import annotations

import threading
from typing import Any

import psutil
import torch


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
