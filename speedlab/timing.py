"""Latency measurement of one callable: warm-up, then timed calls until both a minimum count and a minimum time;
and of several requests kept in flight at once (`measure_concurrent`: answers per second over the wall time).

On CUDA each call is bracketed by CUDA events (the GPU's own clock, no host round trip inside the region); on the
CPU by `time.perf_counter_ns` around a call that returns only when its work is done. The first call is timed on its
own (it carries lazy initialisation, compilation or allocation), then excluded like the rest of the warm-up.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from speedlab import stats


@dataclass(frozen=True)
class TimingCfg:
    warmup_iters: int = 5
    warmup_min_s: float = 0.2
    min_iters: int = 20
    min_time_s: float = 1.0
    max_iters: int = 10_000  # a cap, so a 10 µs call cannot run for ever


@dataclass(frozen=True)
class Latency:
    """Milliseconds per call over `n` timed calls (`samples_ms`: every one, kept for the raw-samples file)."""

    n: int
    mean_ms: float
    std_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    min_ms: float
    first_call_ms: float
    too_few_for: list[str]  # percentiles these few calls cannot resolve (stats.summary)
    samples_ms: tuple[float, ...] = field(default=(), repr=False)

    def record(self) -> dict[str, float | int | list[str]]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in vars(self).items() if k != "samples_ms"}


def summarise(samples_ms: list[float], first_call_ms: float) -> Latency:
    arr = np.asarray(samples_ms, dtype=np.float64)
    figures = stats.summary(arr)
    return Latency(
        n=len(arr),
        mean_ms=float(arr.mean()),
        std_ms=float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
        p50_ms=figures["p50"],
        p90_ms=figures["p90"],
        p95_ms=figures["p95"],
        p99_ms=figures["p99"],
        max_ms=figures["max"],
        min_ms=float(arr.min()),
        first_call_ms=first_call_ms,
        too_few_for=figures["too_few_for"],
        samples_ms=tuple(samples_ms),
    )


def measure(fn: Callable[[], object], device: torch.device, cfg: TimingCfg) -> Latency:
    """Time `fn` (which runs one inference on inputs already in place) as described in the module docstring."""
    timer = _cuda_timer if device.type == "cuda" else _host_timer
    first_call_ms = timer(fn, device)
    start = time.perf_counter()
    done = 1
    while done < cfg.warmup_iters or time.perf_counter() - start < cfg.warmup_min_s:
        timer(fn, device)
        done += 1
    samples: list[float] = []
    start = time.perf_counter()

    def more() -> bool:
        return len(samples) < cfg.min_iters or time.perf_counter() - start < cfg.min_time_s

    while len(samples) < cfg.max_iters and more():
        samples.append(timer(fn, device))
    return summarise(samples, first_call_ms)


@dataclass(frozen=True)
class Concurrent:
    """`n` requests kept in flight at once: every request's latency (pooled over the requests) and how many answers
    came back per second of wall time, from the moment all of them started to the last answer."""

    latency: Latency
    requests: int
    answers: int
    wall_s: float

    @property
    def answers_per_s(self) -> float:
        return self.answers / self.wall_s


def measure_concurrent(runs: list[Callable[[], object]], cfg: TimingCfg) -> Concurrent:
    """Keep one request per callable in flight, each on a thread of its own that sends its next request as soon as
    its answer is back (a closed loop, as benchmark_app runs its infer requests). After each thread's warm-up, all
    start together; the timed phase ends when both `min_iters` answers and `min_time_s` have passed, and the
    requests then in flight are waited for and counted. On the CPU only: the callables must return when done."""
    n = len(runs)
    start_line = threading.Barrier(n + 1)
    stop = threading.Event()
    samples: list[list[float]] = [[] for _ in runs]
    ends = [0.0] * n
    firsts = [0.0] * n
    errors: list[BaseException] = []

    def serve(i: int) -> None:
        try:
            firsts[i] = _host_timer(runs[i], _CPU)
            warm_until, done = time.perf_counter() + cfg.warmup_min_s, 1
            while done < cfg.warmup_iters or time.perf_counter() < warm_until:
                runs[i]()
                done += 1
        except BaseException as err:  # noqa: BLE001 - raised again in the caller's thread
            errors.append(err)
            start_line.abort()
            return
        try:
            start_line.wait()
        except threading.BrokenBarrierError:  # another request failed its warm-up
            return
        try:
            while not stop.is_set():
                samples[i].append(_host_timer(runs[i], _CPU))
            ends[i] = time.perf_counter()
        except BaseException as err:  # noqa: BLE001
            errors.append(err)
            stop.set()

    threads = [threading.Thread(target=serve, args=(i,), daemon=True) for i in range(n)]
    for thread in threads:
        thread.start()
    with contextlib.suppress(threading.BrokenBarrierError):  # a request failed its warm-up: raised below
        start_line.wait()
    begin = time.perf_counter()
    while not stop.is_set() and not errors:
        answered = sum(len(s) for s in samples)
        if answered >= cfg.max_iters or (answered >= cfg.min_iters and time.perf_counter() - begin >= cfg.min_time_s):
            break
        time.sleep(0.005)
    stop.set()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    pooled = [t for series in samples for t in series]
    latency = summarise(pooled, max(firsts))
    return Concurrent(latency, n, len(pooled), max(ends) - begin)


_CPU = torch.device("cpu")


def _host_timer(fn: Callable[[], object], device: torch.device) -> float:
    begin = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - begin) / 1e6


def _cuda_timer(fn: Callable[[], object], device: torch.device) -> float:
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    fn()
    end.record()
    end.synchronize()
    return begin.elapsed_time(end)
