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

from speedlab import checkpoint, record, results
from speedlab.errors import SpeedlabError
from speedlab.report import command as report
from tests.conftest import DRILL_QUICK, FAULT_RUN, REPO, invoke

DROP = "model.drop_path=0.2"  # stochastic depth: the RNG state must come back from the checkpoint too
EPOCHS = 8


def _train(run_dir, *overrides: str) -> dict:
    invoke("train", [*FAULT_RUN, f"trainer.epochs={EPOCHS}", DROP, *overrides, f"hydra.run.dir={run_dir}"])
    return json.loads(record.result_path(run_dir).read_text())


@pytest.mark.slow  # three training runs, one killed: ~10 s (make fault-drill runs it too)
@pytest.mark.drill("1. kill -9 mid-epoch")
def test_kill_9_mid_epoch_keeps_finished_epochs_reads_as_crashed_and_resumes_exactly(tmp_path, capsys, drill):
    run_dir = tmp_path / "killed"
    command = [sys.executable, "-m", "speedlab", "train", *FAULT_RUN, f"trainer.epochs={EPOCHS}", DROP]
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
    drill(injected=f"SIGKILL to a {EPOCHS}-epoch train run inside epoch {saved + 1}",
          did=f"result.json kept {len(killed['epochs'])} finished epoch(s) and reads `crashed` (report too); "
              f"resume from epoch {saved} gave per-epoch losses and accuracies identical to an uninterrupted run",
          lost=f"nothing finished (epoch {saved + 1}, in progress, ran again)")  # fmt: skip


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
@pytest.mark.drill("5. concurrent sweeps")
def test_two_sweeps_started_together_each_with_two_parallel_jobs_get_their_own_directories(tmp_path, drill):
    """Two sweeps launched in the same instant, each running its 2 jobs at once in worker processes through Hydra's
    joblib launcher (one thread a job): one directory per sweep, holding both its jobs; every job's result.json
    valid; the report sees all four."""
    env = {**os.environ, "SPEEDLAB_ARTIFACTS": str(tmp_path)}
    sweep = [sys.executable, "-m", "speedlab", "train", *FAULT_RUN, "trainer.epochs=1", "trainer.max_steps=2",
             "trainer.threads=1", "trainer.save_checkpoints=false", "seed=0,1", "hydra/launcher=joblib",
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
    assert len(results.collect([tmp_path / "sweeps"])) == 4
    drill(injected="two sweeps started in the same instant, each with 2 jobs at once (Hydra joblib launcher)",
          did="2 sweep directories, 2 valid result.json files in each from 4 worker processes; report sees all 4",
          lost="nothing")  # fmt: skip


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
from speedlab.entry import train  # the train command in this process (the patched torch.save), as its exec'd entry
sys.argv = ["speedlab.entry.train", *sys.argv[2:]]
sys.exit(train.main())
"""


@pytest.mark.slow  # ~7 s (make fault-drill runs it too)
@pytest.mark.drill("2. kill -9 mid-checkpoint")
def test_kill_9_while_writing_a_checkpoint_leaves_the_previous_one_whole(tmp_path, drill):
    run_dir = tmp_path / "run"
    env = {**os.environ, "SPEEDLAB_ARTIFACTS": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_SAVE, "train", *FAULT_RUN, "trainer.epochs=3", f"hydra.run.dir={run_dir}"],
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
    drill(injected=f"SIGKILL with epoch 2's checkpoint half written ({partial[0].stat().st_size:,} bytes on disk)",
          did="the half-written file stays under its temporary name; checkpoint.pt (epoch 1) loads whole; "
              "result.json reads `crashed`",
          lost="nothing finished (epoch 2's checkpoint, unfinished)")  # fmt: skip


@pytest.mark.drill("4. damaged files")
def test_a_truncated_checkpoint_is_one_clear_error_naming_it(run_main, tmp_path, drill):
    run_dir = tmp_path / "run"
    assert run_main("train", *FAULT_RUN, "trainer.epochs=1", f"hydra.run.dir={run_dir}").returncode == 0
    path = record.checkpoint_path(run_dir)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    outcome = run_main(
        "train", *FAULT_RUN, "trainer.epochs=2", f"resume={run_dir}", f"hydra.run.dir={tmp_path / 'again'}"
    )
    assert outcome.returncode != 0
    assert f"cannot read checkpoint {path}" in outcome.stderr and "truncated or not a checkpoint" in outcome.stderr
    assert outcome.stderr.count("speedlab: error") == 1 and len(outcome.stderr.strip().splitlines()) == 1
    drill(injected="checkpoint.pt cut to a third, then `train resume=`",
          did="one error line: `cannot read checkpoint PATH: ... (truncated or not a checkpoint; ...)`",
          lost="nothing beyond the damaged file")  # fmt: skip


class _Payload:
    """An object a checkpoint must never bring back: unpickling it could run any code."""


@pytest.mark.drill("4. damaged files")
def test_a_checkpoint_holding_pickled_objects_is_refused(tmp_path, drill):
    import torch

    path = tmp_path / "checkpoint.pt"
    torch.save({"format": checkpoint.FORMAT, "model": _Payload()}, path)
    with pytest.raises(SpeedlabError, match="holds pickled objects other than tensors and plain data"):
        checkpoint.load(path)
    drill(
        injected="a checkpoint holding a pickled Python object",
        did="refused by the weights-only load, saying that loading it could run code",
        lost="nothing",
    )


@pytest.mark.drill("4. damaged files")
def test_a_damaged_result_json_is_named_and_skipped_by_the_report(run_main, tmp_path, drill):
    good, bad = tmp_path / "runs" / "good", tmp_path / "runs" / "bad"
    assert run_main("train", *FAULT_RUN, "trainer.epochs=1", f"hydra.run.dir={good}").returncode == 0
    bad.mkdir(parents=True)
    record.result_path(bad).write_text(record.result_path(good).read_text()[:200])  # cut mid-write by a full disk
    outcome = run_main("report", str(tmp_path / "runs"), "--out", str(tmp_path / "report"))
    assert outcome.returncode == 0
    assert f"speedlab: skipped {record.result_path(bad)}: no readable result.json" in outcome.stderr
    assert "Vanilla" in (tmp_path / "report" / "report.md").read_text()
    drill(
        injected="a result.json cut to 200 bytes beside a good run",
        did="`report` names the file on stderr, skips it and renders the other run",
        lost="nothing beyond that file",
    )


@pytest.mark.drill("4. damaged files")
def test_a_truncated_decoded_cache_is_rebuilt_not_read(fake_tin, capsys, drill):
    from tests.test_data import data_cfg, decoded_arrays

    cfg = data_cfg(fake_tin)
    decoded_arrays(cfg)
    images = next((fake_tin / "speedlab_cache").glob("*train*.images.npy"))
    images.write_bytes(images.read_bytes()[:1000])
    again, _, _ = decoded_arrays(cfg)
    assert again["train"].built and "damaged cache files" in again["train"].rebuild_reason
    assert len(again["train"].images) > 0
    drill(
        injected="the decoded cache's image array cut to 1,000 bytes",
        did=f"rebuilt ({again['train'].rebuild_reason[:60]}...), {len(again['train'].images)} images",
        lost="nothing",
    )


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


TRAIN = [sys.executable, "-m", "speedlab", "train", *FAULT_RUN]
CHECKPOINT_DISK = "64m" if DRILL_QUICK else "8m"  # the quick model's checkpoint (weights + AdamW) is ~15 MB


def _free_in(error: str) -> str:
    return re.search(r": ([\d.]+ (?:B|KiB|MiB|GiB)) free there", error).group(1)


@pytest.mark.slow  # a subprocess in its own mount namespace: ~10 s
@pytest.mark.drill("3. disk full")
def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint_and_says_so(tmp_path, drill):
    steps, disk = _on_a_small_disk(tmp_path, CHECKPOINT_DISK, [{
        "argv": [*TRAIN, "trainer.epochs=8", "hydra.run.dir=MOUNT/run"],
        "fill_when": "MOUNT/run/checkpoint.pt", "leave": 160 * 1024,  # room for result.json, not for a checkpoint
    }, {  # space freed: the run resumes from the checkpoint the full disk left
        "argv": [*TRAIN, "trainer.epochs=8", "resume=MOUNT/run", "hydra.run.dir=MOUNT/resumed"], "unfill": True,
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
    assert steps[1]["rc"] == 0, steps[1]["stderr"][-2000:]
    resumed = json.loads(record.result_path(disk / "resumed").read_text())
    assert resumed["resumed_at_epoch"] == saved and resumed["epochs"][-1]["epoch"] == 8
    size = CHECKPOINT_DISK.replace("m", " MiB")
    drill(injected=f"ENOSPC: the {size} tmpfs filled after checkpoint 1, leaving 160 KiB",
          did=f"one error naming checkpoint.pt and the space left ({_free_in(error)}); run `failed` with that reason; "
              f"checkpoint of epoch {saved} whole; resumed to epoch 8 once space was freed",
          lost=f"nothing finished (epoch {saved + 1}'s checkpoint did not fit)")  # fmt: skip


@pytest.mark.slow  # a subprocess in its own mount namespace: ~6 s
@pytest.mark.drill("3. disk full")
def test_a_full_disk_while_writing_result_json_keeps_the_previous_one(tmp_path, drill):
    steps, disk = _on_a_small_disk(tmp_path, "4m", [{
        "argv": [*TRAIN, "trainer.epochs=40", "trainer.save_checkpoints=false", "monitor.enabled=false",
                 "hydra.run.dir=MOUNT/run"],
        "fill_when": "MOUNT/run/result.json", "fill_when_text": '{"epoch": 1,', "leave": 0,
    }])  # fmt: skip
    assert steps[0]["rc"] == 1 and steps[0]["filled"]
    error = _one_error(steps[0]["stderr"])
    assert "no space left on the device writing" in error and "/run/result.json: " in error
    assert "the previous result.json is untouched" in error
    assert "could not record the run's end in" in steps[0]["stderr"]
    result = json.loads(record.result_path(disk / "run").read_text())  # the previous one: whole, valid JSON
    assert record.status_of(result) == record.CRASHED
    assert not list((disk / "run").glob(".*.tmp*"))
    drill(injected="ENOSPC: a 4 MiB tmpfs filled completely once result.json held epoch 1 (checkpoints off)",
          did=f"one error naming result.json ({_free_in(error)} free); stderr says the end could not be recorded; "
              f"the previous result.json is valid JSON with {len(result['epochs'])} epoch(s) and reads `crashed`",
          lost="nothing finished")  # fmt: skip


@pytest.mark.slow  # a subprocess in its own mount namespace: ~6 s
@pytest.mark.drill("3. disk full")
def test_a_full_disk_while_building_the_data_cache_leaves_no_cache_that_looks_complete(tmp_path, fake_tin, drill):
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
    drill(injected="ENOSPC: `data prepare` with its cache on a 4 MiB tmpfs holding 256 KiB free",
          did=f"one error naming the cache file, {_free_in(error)} free and the bytes needed, before decoding; "
              "the next run (space freed) said `building (no cache yet)` and built it",
          lost="nothing (no partial cache was taken for a complete one)")  # fmt: skip


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
