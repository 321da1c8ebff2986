"""The resource monitor: it samples, summarises and states its own cost; every run carries it (or not, when told);
the report draws its timeline."""

from __future__ import annotations

import json
import time

import pytest
import torch

from speedlab import record
from speedlab.monitor import COLUMNS, ResourceMonitor, read_timeline
from tests.conftest import TINY_DATA

MLP = [*TINY_DATA, "model=mlp", "model.widths=[8]", "trainer.batch_size=32", "trainer.epochs=2",
       "trainer.save_checkpoints=false"]  # fmt: skip


def test_the_monitor_samples_cpu_and_memory_and_states_its_cost(tmp_path):
    monitor = ResourceMonitor(interval_s=0.01).start()
    end = time.perf_counter() + 0.3
    a = torch.randn(256, 256)
    while time.perf_counter() < end:
        a @ a  # keep the process busy
    monitor.stop()
    summary = monitor.summary()
    assert summary["samples"] >= 10 and summary["cores"] >= 1
    figures = summary["figures"]
    assert 0 < figures["process_cpu_pct"]["mean"] <= 100.0 + 1e-6
    assert figures["process_rss_bytes"]["peak"] >= figures["process_rss_bytes"]["mean"] > 0
    assert figures["process_cpu_pct"]["p95"] <= figures["process_cpu_pct"]["peak"]
    assert 0 < summary["sampler_cpu_fraction"] < 0.5 and summary["per_sample_us"] > 0
    assert summary["gpu"] in ("none", "nvml") or "Error" in summary["gpu"]
    path = tmp_path / "t.csv"
    path.write_text(monitor.timeline_csv())
    timeline = read_timeline(path)
    assert set(timeline) == set(COLUMNS) and len(timeline["t_s"]) == summary["samples"]


def test_every_run_records_its_resources_unless_told_not_to(run_main, tmp_path):
    on, off = tmp_path / "on", tmp_path / "off"
    assert run_main("train", *MLP, "monitor.interval_s=0.05", f"hydra.run.dir={on}").returncode == 0
    assert run_main("train", *MLP, "monitor.enabled=false", f"hydra.run.dir={off}").returncode == 0
    result = json.loads(record.result_path(on).read_text())
    assert result["resources"]["samples"] >= 1 and result["resources"]["interval_s"] == 0.05
    assert read_timeline(record.resources_path(on))["process_rss_bytes"][0] > 0
    assert "resources" not in json.loads(record.result_path(off).read_text())
    assert not record.resources_path(off).exists()


@pytest.mark.parametrize("value", ["0", "-1"])
def test_a_bad_interval_is_one_clear_error(run_main, tmp_path, value):
    outcome = run_main("train", *MLP, f"monitor.interval_s={value}", f"hydra.run.dir={tmp_path / 'run'}")
    assert outcome.returncode != 0 and f"monitor.interval_s={float(value)}" in outcome.stderr
    assert outcome.stderr.count("error") == 1 and "Traceback" not in outcome.stderr


def test_the_report_shows_parity_runs_and_resource_timelines(run_main, tmp_path):
    runs = tmp_path / "runs"
    assert run_main("train", *MLP, "monitor.interval_s=0.05", f"hydra.run.dir={runs / 'train'}").returncode == 0
    parity = run_main("parity", *MLP, "parity.steps=3", "monitor.interval_s=0.05", f"hydra.run.dir={runs / 'par'}")
    assert parity.returncode == 0, parity.stderr
    out = tmp_path / "report"
    assert run_main("report", str(runs), "--out", str(out)).returncode == 0
    text = (out / "report.md").read_text()
    assert "## Parity runs" in text and "| identical |" in text and "![parity-1.png](parity-1.png)" in text
    assert "## Resources" in text and "![resources-2.png](resources-2.png)" in text
    assert (out / "parity-1.png").stat().st_size > 0 and (out / "resources-1.png").stat().st_size > 0
