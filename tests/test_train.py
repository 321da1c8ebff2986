"""The trainer: result.json contents, determinism, resume, interruption, bad input, DDP and sweeps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from speedlab import checkpoint
from speedlab.train.loop import Trainer
from tests.conftest import REPO, TINY, TINY_DATA, TRAIN_TINY, invoke, tiny_family

EPOCH_KEYS = {"epoch", "train_time_s", "images_per_s", "train_loss", "val_loss", "val_acc", "val_top5"}


def train(run_dir: Path, *overrides: str) -> dict:
    """Run `speedlab train` in this process with its outputs in run_dir; returns its result.json."""
    invoke("train", [*TINY, *TRAIN_TINY, *overrides, f"hydra.run.dir={run_dir}"])
    return json.loads((run_dir / "result.json").read_text())


def losses(result: dict) -> list[tuple[float, float]]:
    return [(e["train_loss"], e["val_loss"]) for e in result["epochs"]]


def test_result_json_holds_what_the_issue_asks(tmp_path, capsys):
    result = train(tmp_path / "run", "trainer.epochs=2")
    assert result["status"] == "ok"
    assert len(result["epochs"]) == 2 and all(set(e) >= EPOCH_KEYS for e in result["epochs"])
    for key in ("compile_time_s", "mean_epoch_time_s", "final_val_acc", "peak_memory_bytes", "recompiles", "params"):
        assert result[key] is not None, key
    assert result["peak_memory_kind"] == "process_peak_rss" and result["peak_memory_bytes"] > 10_000_000
    assert result["params"] > 10_000 and result["changes"] == "Vanilla"
    assert result["activation_implementation"] == "pytorch"
    assert result["config"]["trainer"]["epochs"] == 2 and result["env"]["torch"] == torch.__version__
    # efficiency: a step's FLOPs counted on a real forward + backward, against this process's fp32 matmul yardstick
    assert result["step_flops"] > 3 * 32 * 2 * 62_000  # at least 3 x (batch x 2 FLOPs x parameters)
    assert all(e["achieved_flops_per_s"] > 0 for e in result["epochs"])
    assert result["yardstick_precision"] == "fp32" and result["yardstick_flops_per_s"] > 1e9
    assert 0 < result["efficiency"] < 1.5
    out = capsys.readouterr().out
    header = "| Changes | Train epoch time | Val accuracy | Images/s | Achieved | Compile time | Peak memory |"
    assert header in " ".join(out.split())  # cells are padded to the widest value
    assert "% of fp32 peak)" in out
    assert "epoch 2/2: train" in out  # plain progress lines when not on a terminal


def test_the_dataloader_feed_trains_on_the_same_batches(tmp_path):
    """data.feed=loader (once data.pipeline=classic): per-image decode in a DataLoader, labelled as such."""
    result = train(tmp_path / "run", "data.feed=loader", "data.workers=0")
    assert result["status"] == "ok" and result["changes"] == "DataLoader" and result["data"]["feed"] == "loader"
    assert result["epochs"][0]["images"] == 192 and result["notes"] == [
        "data.pin_memory=true has no effect without CUDA"
    ]


def test_same_seed_gives_identical_losses_and_another_seed_does_not(tmp_path):
    first = train(tmp_path / "a", "trainer.epochs=2", "seed=3", "model.drop_path=0.2")
    second = train(tmp_path / "b", "trainer.epochs=2", "seed=3", "model.drop_path=0.2")
    other = train(tmp_path / "c", "trainer.epochs=2", "seed=4", "model.drop_path=0.2")
    assert losses(first) == losses(second)
    assert losses(first) != losses(other)


def test_warm_up_leaves_training_exactly_as_without_it(tmp_path):
    """The timing warm-up's steps are undone: one warm-up step or five, the losses are the same."""
    assert losses(train(tmp_path / "a", "trainer.timing_warmup=1")) == losses(
        train(tmp_path / "b", "trainer.timing_warmup=5")
    )


def test_interrupt_then_resume_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    drop = "model.drop_path=0.2"  # stochastic depth: the RNG state must survive the checkpoint too
    full = train(tmp_path / "full", "trainer.epochs=3", drop)

    real_epoch = Trainer.train_epoch

    def interrupt_in_epoch_3(self, epoch, total):
        if epoch == 3:
            raise KeyboardInterrupt
        return real_epoch(self, epoch, total)

    monkeypatch.setattr(Trainer, "train_epoch", interrupt_in_epoch_3)
    cut_dir = tmp_path / "cut"
    assert invoke("train", [*TINY, *TRAIN_TINY, "trainer.epochs=3", drop, f"hydra.run.dir={cut_dir}"]) == 130
    monkeypatch.undo()
    cut = json.loads((tmp_path / "cut" / "result.json").read_text())
    assert cut["status"] == "interrupted" and len(cut["epochs"]) == 2
    assert checkpoint.load(tmp_path / "cut" / "checkpoint.pt")["epoch"] == 2

    resumed = train(tmp_path / "resumed", "trainer.epochs=3", drop, f"resume={tmp_path / 'cut'}")
    assert resumed["resumed_at_epoch"] == 2
    assert losses(resumed) == losses(full)
    assert [e["val_acc"] for e in resumed["epochs"]] == [e["val_acc"] for e in full["epochs"]]


def test_checkpoint_loads_with_weights_only(tmp_path):
    train(tmp_path / "run")
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert {"model", "optimizer", "scaler", "epoch", "rng", "config", "model_config"} <= set(state)


def expect_error(capsys, *overrides: str) -> str:
    # Another family than ConvNeXt cannot take the quick preset's model keys: the same data without them.
    base = TINY_DATA if any(o.startswith("model=") for o in overrides) else TINY
    if any(o.startswith("data=") for o in overrides):  # keys of the tiny synthetic data may not exist in another
        base = [o for o in base if not o.startswith("data.")]
    assert invoke("train", [*TRAIN_TINY, *base, *overrides]) == 1
    err = capsys.readouterr().err
    assert err.count("speedlab: error:") == 1 and "Traceback" not in err
    return err


def test_checkpoint_of_another_model_is_refused_naming_the_difference(tmp_path, capsys):
    train(tmp_path / "run")
    err = expect_error(capsys, "model.dims=[16,32,64,128]", f"resume={tmp_path / 'run'}", f"hydra.run.dir={tmp_path}/b")
    assert (
        "is from a different model" in err
        and "model.dims: checkpoint [8, 16, 32, 64], this run [16, 32, 64, 128]" in err
    )


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["amp.enabled=true", "amp.dtype=fp16"], "amp.dtype=fp16 needs a CUDA GPU"),
        (["trainer.batch_size=0"], "trainer.batch_size=0: must be at least 1"),
        (["trainer.cudnn_benchmark=true"], "trainer.cudnn_benchmark=true needs CUDA"),
        (["model=timm", "model.timm_name=resnet5O"], "close matches: resnet50"),
        (["data=tinyimagenet", "data.root=/nonexistent/tin"], "/nonexistent/tin"),
        (["resume=/nonexistent/run"], "resume=/nonexistent/run: /nonexistent/run does not exist"),
        (["device=cuda"], "device=cuda: this machine has no CUDA GPU"),
    ],
)
def test_bad_input_gives_one_clear_error(tmp_path, capsys, overrides, expected):
    if "CUDA" in expected and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert expected in expect_error(capsys, *overrides, f"hydra.run.dir={tmp_path}")


def test_unknown_activation_is_refused_listing_the_registry(run_main):
    out = run_main("train", "model.activation=swishy")
    assert out.returncode == 1 and "'swishy'" in out.stderr and "fastswish" in out.stderr


def test_compiled_amp_run_times_compilation_on_its_own(tmp_path):
    # The MLP: compile timing does not depend on the family, and its graph compiles cold in seconds (ConvNeXt's: ~50).
    invoke("train", [*tiny_family("mlp"), "+exp=tc_amp", "trainer.max_steps=3", f"hydra.run.dir={tmp_path / 'run'}"])
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["changes"] == "TC + AMP (bf16)"
    assert result["frames_compiled"] >= 1 and result["recompiles"] == 0
    assert result["compile_time_s"] > result["steady_step_s"]
    assert torch.isfinite(torch.tensor(result["final_train_loss"]))


@pytest.mark.slow  # three fresh jobs: ~9 s; the fast suite keeps multiruns in test_data and test_tracking
def test_multirun_runs_each_job_and_records_an_impossible_one_as_skipped(run_cli, tmp_path):
    out = run_cli("train", *TINY, *TRAIN_TINY, "+exp=vanilla,amp", "amp.dtype=fp16", "trainer.max_steps=2", "-m")
    assert out.returncode == 0, out.stderr
    results = {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "artifacts").rglob("result.json")}
    assert {r["status"] for r in results.values()} == {"ok", "skipped"}
    assert "needs a CUDA GPU" in next(r["reason"] for r in results.values() if r["status"] == "skipped")
    assert "sweep summary" in out.stdout and "skipped: amp.dtype=fp16" in out.stdout


def test_ddp_over_gloo_ends_with_identical_weights_on_both_ranks(tmp_path):
    env = {**os.environ, "SPEEDLAB_ARTIFACTS": str(tmp_path), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    out = subprocess.run(
        [*cmd, "-m", "speedlab", "train", *TINY, *TRAIN_TINY, "trainer.epochs=2", "model.drop_path=0.2"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    (result_file,) = tmp_path.rglob("result.json")  # rank 0 alone writes
    result = json.loads(result_file.read_text())
    ddp = result["distributed"]
    assert ddp["world_size"] == 2 and ddp["backend"] == "gloo"
    assert ddp["weights_identical"] and len(set(ddp["weights_sha256"])) == 1 and len(ddp["weights_sha256"]) == 2
    assert result["epochs"][0]["images"] == 192  # both shards together: 2 ranks x 3 batches x 32
    assert out.stdout.count("epoch 1/2") == 1  # rank 0 alone logs


def test_ctrl_c_leaves_the_last_checkpoint_and_an_interrupted_result(tmp_path):
    env = {**os.environ, "SPEEDLAB_ARTIFACTS": str(tmp_path)}
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "speedlab", "train", *TINY, *TRAIN_TINY, "trainer.epochs=500",
         f"hydra.run.dir={run_dir}"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A shell without job control starts background jobs with SIGINT ignored, and Python then never turns it
        # into KeyboardInterrupt: restore the default, as a terminal's Ctrl-C would find it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (run_dir / "checkpoint.pt").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "interrupted" and result["epochs"]
    assert checkpoint.load(run_dir / "checkpoint.pt")["epoch"] >= 1
    assert not list(run_dir.glob(".*.tmp*"))  # no half-written file left behind


def test_eval_every_throttles_evaluation_checkpoints_and_result_writes(tmp_path, monkeypatch):
    from speedlab import record

    saves = []
    real_save = record.RunRecord.save
    monkeypatch.setattr(record.RunRecord, "save", lambda self: saves.append(1) or real_save(self))
    result = train(tmp_path / "run", "trainer.epochs=5", "trainer.eval_every=2", "trainer.max_steps=1")
    evaluated = [e["epoch"] for e in result["epochs"] if "val_acc" in e]
    assert evaluated == [2, 4, 5] and len(result["epochs"]) == 5
    assert result["final_val_acc"] == result["epochs"][-1]["val_acc"]
    assert checkpoint.load(tmp_path / "run" / "checkpoint.pt")["epoch"] == 5
    assert len(saves) <= 2 + 3  # start and end of the run, plus one per evaluated epoch


def test_the_timed_epoch_reads_no_loss_without_a_progress_bar(tmp_path, monkeypatch):
    """Reading a loss syncs the device: without a bar on screen, an epoch reads none of its step losses (the mean
    stays on the device until the next bookkeeping epoch reads all pending ones at once; the losses the steps
    return are marked, so reads of other tensors, such as the optimizer's step counts, do not count)."""
    reads: list[int] = []

    class Watched(torch.Tensor):
        def item(self):
            reads.append(1)
            return super().item()

    real_step = Trainer.step
    monkeypatch.setattr(Trainer, "step", lambda self, x, y, lr: real_step(self, x, y, lr).as_subclass(Watched))
    result = train(tmp_path / "run", "trainer.epochs=1")
    assert result["epochs"][0]["steps"] == 6 and not reads and isinstance(result["epochs"][0]["train_loss"], float)


def test_result_json_records_the_runs_own_flags(tmp_path):
    """A sweep job's env.flags are its own, not what the previous job left behind when this one started."""
    torch.set_float32_matmul_precision("medium")  # as a previous job (TF32 on a GPU) would leave it
    try:
        result = train(tmp_path / "run")
    finally:
        torch.set_float32_matmul_precision("highest")
    assert result["env"]["flags"]["float32_matmul_precision"] == "highest"


def test_a_batch_larger_than_the_data_is_refused(tmp_path, capsys):
    err = expect_error(capsys, "trainer.batch_size=500", f"hydra.run.dir={tmp_path}")
    assert "trainer.batch_size=500 is more than the 192 training samples" in err


def test_the_cuda_home_warning_alone_is_dropped():
    import logging

    from speedlab.device import quiet_cuda_home_warning

    quiet_cuda_home_warning()
    quiet_cuda_home_warning()  # idempotent
    logger = logging.getLogger("torch.utils.cpp_extension")
    assert len(logger.filters) == 1
    make = lambda msg: logging.LogRecord(logger.name, logging.WARNING, __file__, 1, msg, ("/usr/local",), None)  # noqa: E731
    assert not logger.filters[0].filter(make("No CUDA runtime is found, using CUDA_HOME='%s'"))
    assert logger.filters[0].filter(make("some other warning %s"))


@pytest.mark.slow
def test_first_compile_prints_no_cuda_home_warning(run_cli, tmp_path):
    # A cold cache, so the compiler really runs; LeNet5 compiles in seconds where ConvNeXt took 40 s.
    out = run_cli("train", *tiny_family("lenet5"), *TRAIN_TINY, "compile.enabled=true", "trainer.max_steps=1",
                  env={"TORCHINDUCTOR_CACHE_DIR": str(tmp_path)})  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "No CUDA runtime is found" not in out.stderr
