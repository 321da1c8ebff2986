"""Faults beyond Ctrl-C (tests/test_train.py covers that): a run killed with SIGKILL mid-epoch keeps every finished
epoch and its last checkpoint, reads as `crashed` in the report and in a resume, and resumes exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from speedlab import checkpoint, record
from speedlab.report import command as report
from speedlab.train import command as train_cmd
from tests.conftest import REPO, TINY

DROP = "model.drop_path=0.2"  # stochastic depth: the RNG state must come back from the checkpoint too
EPOCHS = 8


def _train(run_dir, *overrides: str) -> dict:
    train_cmd.main([*TINY, f"trainer.epochs={EPOCHS}", DROP, *overrides, f"hydra.run.dir={run_dir}"])
    return json.loads(record.result_path(run_dir).read_text())


def test_kill_9_mid_epoch_keeps_finished_epochs_reads_as_crashed_and_resumes_exactly(tmp_path, capsys):
    run_dir = tmp_path / "killed"
    command = [sys.executable, "-m", "speedlab", "train", *TINY, f"trainer.epochs={EPOCHS}", DROP]
    env = {**os.environ, "SPEEDLAB_ARTIFACTS": str(tmp_path)}
    proc = subprocess.Popen([*command, f"hydra.run.dir={run_dir}"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:  # the first checkpoint: now inside epoch 2
        if record.checkpoint_path(run_dir).exists():
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    killed = json.loads(record.result_path(run_dir).read_text())
    assert killed["status"] == "running"  # a killed process writes nothing more ...
    assert record.status_of(killed) == record.CRASHED  # ... and a reader sees that it is gone
    saved = checkpoint.load(record.checkpoint_path(run_dir))["epoch"]
    assert 1 <= saved < EPOCHS and len(killed["epochs"]) >= saved  # every finished epoch is there
    assert not list(run_dir.glob(".*.tmp*"))

    out = tmp_path / "report"
    report.main([str(run_dir), "--out", str(out)])
    assert "| crashed |" in (out / "report.md").read_text()

    capsys.readouterr()
    resumed = _train(tmp_path / "resumed", f"resume={run_dir}")
    assert "note: resuming a run that crashed (its process was killed)" in capsys.readouterr().out
    full = _train(tmp_path / "full")
    assert resumed["resumed_at_epoch"] == saved
    assert [e["train_loss"] for e in resumed["epochs"]] == [e["train_loss"] for e in full["epochs"]]
    assert [e["val_acc"] for e in resumed["epochs"]] == [e["val_acc"] for e in full["epochs"]]


def test_a_live_run_reads_as_running_and_a_finished_one_as_itself():
    mine = {"status": "running", "process": {"pid": os.getpid(), "host": __import__("socket").gethostname(),
                                             "started_unix": time.time()}}  # fmt: skip
    assert record.status_of(mine) == "running"
    assert record.status_of({**mine, "status": "ok"}) == "ok"
    elsewhere = {**mine, "process": {**mine["process"], "host": "another-host"}}
    assert record.status_of(elsewhere) == "running"  # cannot be checked from here: not called crashed
    reused = {**mine, "process": {**mine["process"], "started_unix": time.time() - 10 * 86400}}
    assert record.status_of(reused) == record.CRASHED  # this pid now belongs to a process started later


def test_two_sweeps_started_together_get_their_own_directories(tmp_path):
    """Two sweeps launched in the same instant (one thread each, so they do not fight over the 2 cores): distinct
    sweep directories, every job's result.json valid, and the report sees all four jobs."""
    env = {**os.environ, "SPEEDLAB_ARTIFACTS": str(tmp_path)}
    sweep = [sys.executable, "-m", "speedlab", "train", *TINY, "trainer.epochs=1", "trainer.max_steps=2",
             "trainer.threads=1", "trainer.checkpoint=false", "seed=0,1", "-m"]  # fmt: skip
    procs = [subprocess.Popen(sweep, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]  # fmt: skip
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    sweeps = sorted((tmp_path / "sweeps").iterdir())
    assert len(sweeps) == 2, sweeps
    results = sorted((tmp_path / "sweeps").glob("*/*/result.json"))
    assert len(results) == 4 and all(json.loads(r.read_text())["status"] == "ok" for r in results)
    assert len(report.collect([tmp_path / "sweeps"])) == 4
