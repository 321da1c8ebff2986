"""Energy per inference from the machine's own counters, or the reason there is none: never an estimate.

- A CUDA device: NVML's total-energy counter (`nvmlDeviceGetTotalEnergyConsumption`, millijoules since the driver
  loaded; Volta and later), the whole board.
- The CPU: RAPL through Linux's powercap (`/sys/class/powercap/*/energy_uj`, microjoules; Intel, and AMD Zen
  since kernel 5.8), the package domains summed. Reading it usually needs root; a counter that wraps is unwrapped
  with the domain's `max_energy_range_uj`.

A package counter measures the whole socket, other processes included: run energy measurements on a quiet machine.
`meter(device)` returns an `EnergyMeter` (`joules()`, cumulative) or the reason there is none, and `per_call` runs
a callable for a short window between two readings.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

POWERCAP_ROOT = "/sys/class/powercap"  # Linux's; $SPEEDLAB_POWERCAP_ROOT points elsewhere (tests)
WINDOW_S = 0.5  # RAPL updates about every millisecond; NVML's counter every few: half a second resolves both


@dataclass
class EnergyMeter:
    """A cumulative energy counter: `joules()` since some fixed point, and where it comes from."""

    source: str
    read: Callable[[], float]

    def joules(self) -> float:
        return self.read()


def meter(device: torch.device) -> EnergyMeter | str:
    """The energy counter of `device`, or the reason there is none."""
    return _nvml(device) if device.type == "cuda" else _rapl()


def per_call(run: Callable[[], object], energy: EnergyMeter, window_s: float = WINDOW_S) -> tuple[float, int]:
    """(joules per call, calls) of `run` over a window of at least `window_s`, between two counter readings."""
    calls, start_j, start = 0, energy.joules(), time.perf_counter()
    while calls == 0 or time.perf_counter() - start < window_s:
        run()
        calls += 1
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (energy.joules() - start_j) / calls, calls


def _rapl() -> EnergyMeter | str:
    root = Path(os.environ.get("SPEEDLAB_POWERCAP_ROOT", POWERCAP_ROOT))
    if not root.is_dir():
        return f"no RAPL counters: {root} does not exist on this machine (virtual machines rarely expose it)"
    domains = sorted(p for p in root.glob("*rapl:*") if ":" not in p.name.split("rapl:", 1)[1])
    if not domains:
        return f"no RAPL package domain under {root}"
    try:
        for domain in domains:
            int((domain / "energy_uj").read_text())
    except OSError as err:
        return f"RAPL's counters are not readable here ({err.strerror}: {domain / 'energy_uj'}; it needs root)"
    last: dict[Path, int] = {}
    total = {d: 0 for d in domains}

    def read() -> float:
        for domain in domains:
            now = int((domain / "energy_uj").read_text())
            before = last.get(domain, now)
            wrap = int((domain / "max_energy_range_uj").read_text()) if now < before else 0
            total[domain] += now - before + wrap
            last[domain] = now
        return sum(total.values()) / 1e6

    read()
    names = ", ".join(d.name for d in domains)
    return EnergyMeter(source=f"RAPL ({names})", read=read)


def _nvml(device: torch.device) -> EnergyMeter | str:
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except Exception as err:  # noqa: BLE001 - NVML raises its own error types; each means "no counter"
        return f"NVML has no energy counter for {device} ({type(err).__name__}: {err})"
    return EnergyMeter(source="NVML", read=lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1e3)
