"""Energy per inference: RAPL's counters read through powercap (a fake tree here: this machine has none), their
wrap-around, and the reason recorded where no counter is readable."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from speedlab import energy


def _domain(root: Path, name: str, uj: int, max_uj: int = 2_000_000) -> Path:
    domain = root / name
    domain.mkdir(parents=True)
    (domain / "energy_uj").write_text(f"{uj}\n")
    (domain / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return domain


def test_rapl_package_domains_are_summed_and_unwrapped(tmp_path, monkeypatch):
    monkeypatch.setenv("SPEEDLAB_POWERCAP_ROOT", str(tmp_path))
    package = _domain(tmp_path, "intel-rapl:0", 1_000_000)
    _domain(tmp_path, "intel-rapl:0:0", 5)  # a core subdomain: inside the package's figure already, not added
    counter = energy.meter(torch.device("cpu"))
    assert isinstance(counter, energy.EnergyMeter) and counter.source == "RAPL (intel-rapl:0)"
    start = counter.joules()
    (package / "energy_uj").write_text("1500000\n")
    assert counter.joules() - start == pytest.approx(0.5)
    (package / "energy_uj").write_text("100000\n")  # wrapped past max_energy_range_uj
    assert counter.joules() - start == pytest.approx(1.1)

    def one_call() -> None:  # each call "spends" 2 mJ
        now = int((package / "energy_uj").read_text())
        (package / "energy_uj").write_text(f"{now + 2000}\n")

    joules, calls = energy.per_call(one_call, counter, window_s=0.05)
    assert calls >= 1 and joules == pytest.approx(0.002)


def test_no_counter_is_a_reason_never_a_number(tmp_path, monkeypatch):
    monkeypatch.setenv("SPEEDLAB_POWERCAP_ROOT", str(tmp_path / "absent"))
    assert "does not exist on this machine" in energy.meter(torch.device("cpu"))
    monkeypatch.setenv("SPEEDLAB_POWERCAP_ROOT", str(tmp_path))
    assert energy.meter(torch.device("cpu")) == f"no RAPL package domain under {tmp_path}"
