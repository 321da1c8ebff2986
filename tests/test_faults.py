"""Faults beyond Ctrl-C (tests/test_train.py covers that): a run killed with SIGKILL mid-epoch keeps every finished
epoch and its last checkpoint, reads as `crashed` in the report and in a resume, and resumes exactly."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from speedlab import checkpoint, record
from speedlab.errors import SpeedlabError
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


@pytest.mark.slow  # two sweeps of fresh processes: ~15 s, and CI's 10 minutes are tight
def test_two_sweeps_started_together_each_with_two_parallel_jobs_get_their_own_directories(tmp_path):
    """Two sweeps launched in the same instant, each running its 2 jobs at once in worker processes through Hydra's
    joblib launcher (one thread a job): one directory per sweep, holding both its jobs; every job's result.json
    valid; the report sees all four."""
    env = {**os.environ, "SPEEDLAB_ARTIFACTS": str(tmp_path)}
    sweep = [sys.executable, "-m", "speedlab", "train", *TINY, "trainer.epochs=1", "trainer.max_steps=2",
             "trainer.threads=1", "trainer.checkpoint=false", "seed=0,1", "hydra/launcher=joblib",
             "hydra.launcher.n_jobs=2", "-m"]  # fmt: skip
    procs = [subprocess.Popen(sweep, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]  # fmt: skip
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    sweeps = sorted((tmp_path / "sweeps").iterdir())
    assert len(sweeps) == 2, sweeps
    for directory in sweeps:
        jobs = [json.loads(r.read_text()) for r in sorted(directory.glob("*/result.json"))]
        assert [j["status"] for j in jobs] == ["ok", "ok"]
        assert len({j["process"]["pid"] for j in jobs} | {p.pid for p in procs}) == 4  # run in worker processes
    assert len(report.collect([tmp_path / "sweeps"])) == 4


# Runs speedlab's train in a process whose torch.save writes half its bytes, then stalls: a kill in the stall is a
# kill in the middle of writing a checkpoint (the first checkpoint goes through whole, so there is one to protect).
SLOW_SAVE = """
import io, sys, time, torch
real = torch.save
calls = []
def slow_save(obj, path, *args, **kwargs):
    calls.append(1)
    if len(calls) == 1:
        return real(obj, path, *args, **kwargs)
    buffer = io.BytesIO()
    real(obj, buffer, *args, **kwargs)
    data = buffer.getvalue()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
        f.flush()
        print("HALF-WRITTEN", flush=True)
        time.sleep(60)
        f.write(data[len(data) // 2 :])
torch.save = slow_save
from speedlab.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def test_kill_9_while_writing_a_checkpoint_leaves_the_previous_one_whole(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "SPEEDLAB_ARTIFACTS": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_SAVE, "train", *TINY, "trainer.epochs=3", f"hydra.run.dir={run_dir}"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    for line in proc.stdout:  # the second checkpoint is half on disk and its writer stalls
        if "HALF-WRITTEN" in line or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    partial = list(run_dir.glob(".checkpoint.pt.*.tmp.pt"))
    assert len(partial) == 1 and partial[0].stat().st_size > 0  # the half-written file, under its temporary name
    assert checkpoint.load(checkpoint.find(run_dir, key="resume"))["epoch"] == 1  # the previous one, whole
    assert record.status_of(json.loads(record.result_path(run_dir).read_text())) == record.CRASHED


def test_a_truncated_checkpoint_is_one_clear_error_naming_it(run_main, tmp_path):
    run_dir = tmp_path / "run"
    assert run_main("train", *TINY, "trainer.epochs=1", f"hydra.run.dir={run_dir}").returncode == 0
    path = record.checkpoint_path(run_dir)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    outcome = run_main("train", *TINY, "trainer.epochs=2", f"resume={run_dir}", f"hydra.run.dir={tmp_path / 'again'}")
    assert outcome.returncode != 0
    assert f"cannot read checkpoint {path}" in outcome.stderr and "truncated or not a checkpoint" in outcome.stderr
    assert outcome.stderr.count("speedlab: error") == 1 and len(outcome.stderr.strip().splitlines()) == 1


class _Payload:
    """An object a checkpoint must never bring back: unpickling it could run any code."""


def test_a_checkpoint_holding_pickled_objects_is_refused(tmp_path):
    import torch

    path = tmp_path / "checkpoint.pt"
    torch.save({"format": checkpoint.FORMAT, "model": _Payload()}, path)
    with pytest.raises(SpeedlabError, match="holds pickled objects other than tensors and plain data"):
        checkpoint.load(path)


def test_a_damaged_result_json_is_named_and_skipped_by_the_report(run_main, tmp_path):
    good, bad = tmp_path / "runs" / "good", tmp_path / "runs" / "bad"
    assert run_main("train", *TINY, "trainer.epochs=1", f"hydra.run.dir={good}").returncode == 0
    bad.mkdir(parents=True)
    record.result_path(bad).write_text(record.result_path(good).read_text()[:200])  # cut mid-write by a full disk
    outcome = run_main("report", str(tmp_path / "runs"), "--out", str(tmp_path / "report"))
    assert outcome.returncode == 0
    assert f"report: skipped {record.result_path(bad)}: no readable result.json" in outcome.stderr
    assert "Vanilla" in (tmp_path / "report" / "report.md").read_text()


def test_a_truncated_decoded_cache_is_rebuilt_not_read(fake_tin, capsys):
    from tests.test_data import data_cfg, decoded_arrays

    cfg = data_cfg(fake_tin)
    decoded_arrays(cfg)
    images = next((fake_tin / "speedlab_cache").glob("*train*.images.npy"))
    images.write_bytes(images.read_bytes()[:1000])
    again, _, _ = decoded_arrays(cfg)
    assert again["train"].built and "damaged cache files" in again["train"].rebuild_reason
    assert len(again["train"].images) > 0


# Scenario 3: the disk fills. tests/small_disk.py mounts a small tmpfs in a private mount namespace and fills it
# while speedlab runs, so the writes fail with the kernel's own ENOSPC.
def _on_a_small_disk(tmp_path, size: str, steps: list[dict]) -> tuple[list[dict], Path]:
    """Run `steps` (see tests/small_disk.py) with MOUNT in their argv and paths meaning the small disk; returns each
    step's outcome and where the disk's final contents were copied."""
    probe = ["unshare", "--mount", "true"]
    if shutil.which("unshare") is None or subprocess.run(probe, capture_output=True).returncode != 0:
        pytest.skip("needs a private mount namespace (`unshare --mount`: root or CAP_SYS_ADMIN) for a small tmpfs")
    mount, out = tmp_path / "small_disk", tmp_path / "small_disk_out"
    out.mkdir()

    def at(value: str) -> str:
        return value.replace("MOUNT", str(mount))

    plan = {"mount": str(mount), "size": size, "out": str(out),
            "env": {"SPEEDLAB_ARTIFACTS": str(tmp_path / "artifacts")},
            "steps": [{**s, "argv": [at(a) for a in s["argv"]],
                       **({"fill_when": at(s["fill_when"])} if "fill_when" in s else {})} for s in steps]}  # fmt: skip
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    subprocess.run(["unshare", "--mount", sys.executable, str(REPO / "tests" / "small_disk.py"),
                    str(tmp_path / "plan.json")], check=True, timeout=600)  # fmt: skip
    return json.loads((out / "outcome.json").read_text())["steps"], out / "disk"


def _one_error(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("speedlab: error")]
    assert len(errors) == 1, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    return errors[0]


TRAIN = [sys.executable, "-m", "speedlab", "train", *TINY]


@pytest.mark.slow  # a subprocess in its own mount namespace: ~6 s
def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint_and_says_so(tmp_path):
    steps, disk = _on_a_small_disk(tmp_path, "8m", [{
        "argv": [*TRAIN, "trainer.epochs=8", "hydra.run.dir=MOUNT/run"],
        "fill_when": "MOUNT/run/checkpoint.pt", "leave": 160 * 1024,  # room for result.json, not for a checkpoint
    }])  # fmt: skip
    assert steps[0]["rc"] == 1 and steps[0]["filled"]
    error = _one_error(steps[0]["stderr"])
    assert "no space left on the device writing" in error and "/run/checkpoint.pt: " in error
    assert re.search(r"checkpoint\.pt: [\d.]+ (B|KiB) free there; the previous checkpoint\.pt is untouched", error), (
        error
    )
    run = disk / "run"
    saved = checkpoint.load(record.checkpoint_path(run))["epoch"]
    result = json.loads(record.result_path(run).read_text())
    assert result["status"] == "failed" and "no space left" in result["reason"]
    assert 1 <= saved < 8 and len(result["epochs"]) >= saved
    assert not list(run.glob(".*.tmp*"))


@pytest.mark.slow  # a subprocess in its own mount namespace: ~6 s
def test_a_full_disk_while_writing_result_json_keeps_the_previous_one(tmp_path):
    steps, disk = _on_a_small_disk(tmp_path, "4m", [{
        "argv": [*TRAIN, "trainer.epochs=40", "trainer.checkpoint=false", "monitor.enabled=false",
                 "hydra.run.dir=MOUNT/run"],
        "fill_when": "MOUNT/run/result.json", "leave": 0,
    }])  # fmt: skip
    assert steps[0]["rc"] == 1 and steps[0]["filled"]
    error = _one_error(steps[0]["stderr"])
    assert "no space left on the device writing" in error and "/run/result.json: " in error
    assert "the previous result.json is untouched" in error
    assert "could not record the run's end in" in steps[0]["stderr"]
    result = json.loads(record.result_path(disk / "run").read_text())  # the previous one: whole, valid JSON
    assert record.status_of(result) == record.CRASHED
    assert not list((disk / "run").glob(".*.tmp*"))


@pytest.mark.slow  # a subprocess in its own mount namespace: ~6 s
def test_a_full_disk_while_building_the_data_cache_leaves_no_cache_that_looks_complete(tmp_path, fake_tin):
    prepare = [sys.executable, "-m", "speedlab", "data", "prepare", f"data.root={fake_tin}",
               "data.cache_dir=MOUNT/cache", f"hydra.run.dir={tmp_path / 'run'}"]  # fmt: skip
    steps, disk = _on_a_small_disk(tmp_path, "4m", [
        {"argv": prepare, "fill_first": True, "leave": 256 * 1024},
        {"argv": prepare, "unfill": True},
    ])  # fmt: skip
    full, freed = steps
    assert full["rc"] == 1
    error = _one_error(full["stderr"])
    assert "no space left on the device writing" in error and "/cache/" in error and "needed" in error
    assert "building (no cache yet)" in freed["stdout"] and freed["rc"] == 0, freed["stderr"][-2000:]
    assert len(list((disk / "cache").glob("*.meta.json"))) == 2  # train and val, both complete now
    assert not list((disk / "cache").glob(".*.tmp*"))


def test_the_atomic_writer_turns_a_full_disk_into_one_error_and_keeps_the_previous_file(tmp_path):
    import errno

    from speedlab import fsutil

    target = tmp_path / "result.json"
    target.write_text("previous")
    expected = r"writing .*result\.json: .* free there; the previous result\.json"
    with pytest.raises(fsutil.DiskFullError, match=expected), fsutil.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_text() == "previous" and not list(tmp_path.glob(".*.tmp*"))
