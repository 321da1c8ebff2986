"""`speedlab compare`: pairing by fingerprint, verdicts with honest significance, exit codes, bad input; the raw
samples it reads; and the CI recipe end to end (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from speedlab import compare, record, samples
from tests.conftest import REPO, TINY_DATA

PASS, REGRESSION, BAD_INPUT = 0, 1, 2


def bench_run(run_dir: Path, p50_ms: float, *, batch: int = 8, backend: str = "eager", calls: int = 60,
              seed: int = 0, status: str = "ok", cpu: str | None = None) -> Path:  # fmt: skip
    """A bench run as the bench command writes it (result.json and samples.npz), with calls around `p50_ms`."""
    rng = np.random.default_rng(seed)
    calls_ms = p50_ms * (1 + 0.01 * rng.standard_normal(calls))
    config = {"model": {"name": "convnext", "dims": [8, 16]}, "bench": {"backends": [backend], "batch_sizes": [batch],
              "precisions": ["fp32"], "min_time_s": 0.1}, "seed": seed, "name": "default"}  # fmt: skip
    with record.recording(run_dir, "bench", config) as rec:
        row = {"backend": backend, "precision": "fp32", "batch_size": batch, "status": status, "reason": None}
        if status == "ok":
            key = f"{backend}.fp32.b{batch}.r0"
            rec["samples"] = {"file": samples.write(run_dir, {key: calls_ms}), "unit": "ms"}
            row.update(n=calls, p50_ms=float(np.median(calls_ms)), p90_ms=0.0, p95_ms=0.0, p99_ms=0.0, max_ms=0.0,
                       min_ms=0.0, too_few_for=["p99"], throughput_per_s=1.0, setup_s=0.0, samples=[key])  # fmt: skip
        else:
            row["reason"] = "RuntimeError: broke"
        rec.update({"params": 1000, "input_shape": [None, 3, 32, 32], "rows": [row]})
        if cpu:
            rec["env"]["cpu"]["model"] = cpu
    return run_dir


def train_run(run_dir: Path, step_s: float, accuracy: float, *, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    steps = step_s * (1 + 0.01 * rng.standard_normal(20))
    config = {"model": {"name": "convnext"}, "trainer": {"batch_size": 32, "epochs": 1}, "seed": seed}
    with record.recording(run_dir, "train", config) as rec:
        rec.update({"changes": "Vanilla", "family": "convnext", "params": 1000, "metric": "val_acc",
                    "epochs": [{"epoch": 1, "train_time_s": float(steps.sum()), "images_per_s": 1.0}],
                    "mean_epoch_time_s": float(steps.sum()), "steps_per_epoch": 20, "final_val_acc": accuracy,
                    "samples": {"file": samples.write(run_dir, {"train.step_s": steps, "train.step_epoch": [1] * 20}),
                                "unit": "s", "step_s": "train.step_s", "step_epoch": "train.step_epoch"}})  # fmt: skip
    return run_dir


def sides(tmp_path: Path, a_ms: list[float], b_ms: list[float], **kw) -> tuple[Path, Path]:
    for name, values in (("a", a_ms), ("b", b_ms)):
        for k, ms in enumerate(values):
            bench_run(tmp_path / name / f"r{k}", ms, seed=k + (100 if name == "b" else 0), **kw)
    return tmp_path / "a", tmp_path / "b"


def run(*args: Path | str) -> tuple[int, str]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = compare.main([str(a) for a in args])
    return code, out.getvalue()


def test_same_config_in_fresh_processes_is_no_change_and_exits_0(tmp_path):
    a, b = sides(tmp_path, [10.0, 10.8, 9.6], [10.4, 9.9, 10.9])  # 10 % process drift, no change
    code, out = run(a, b)
    assert code == PASS and "no significant change" in out and "3 vs 3 processes" in out


def test_a_slowdown_beyond_the_drift_is_a_regression_and_exits_1(tmp_path):
    a, b = sides(tmp_path, [10.0, 10.8, 9.6], [16.0, 17.1, 15.8])
    code, out = run(a, b)
    assert code == REGRESSION and "**slower**" in out and "Result: 1 regression in 1 pairs (exit 1)" in out
    code, out = run(b, a)  # the other way round: faster, not a failure
    assert code == PASS and "| faster" in out


def test_single_runs_cannot_separate_a_change_from_drift(tmp_path):
    a, b = sides(tmp_path, [10.0], [12.0])  # 20 %: within the drift one process per side cannot rule out
    code, out = run(a, b)
    assert code == PASS and "single runs: drift not separable" in out and "no significant change" in out
    a, b = sides(tmp_path / "far", [10.0], [16.0])  # 60 %: beyond 5 % + 30 %
    assert run(a, b)[0] == REGRESSION
    assert run(a, b, "--drift", "0.8")[0] == PASS


def test_unmatched_cells_say_what_differs_and_machines_are_stated_first(tmp_path):
    bench_run(tmp_path / "a" / "r0", 10.0, batch=8)
    bench_run(tmp_path / "a" / "r1", 30.0, batch=64)
    bench_run(tmp_path / "b" / "r0", 10.1, batch=8, cpu="Another CPU")
    code, out = run(tmp_path / "a", tmp_path / "b")
    assert code == PASS
    assert out.index("machine: A ") < out.index("- A: ") and "B Another CPU" in out
    assert "A only: eager fp32 batch 64: nearest differs in batch_size: 64 vs 8" in out


def test_a_cell_that_fails_in_b_is_a_regression_and_json_is_for_machines(tmp_path):
    bench_run(tmp_path / "a" / "r0", 10.0)
    bench_run(tmp_path / "b" / "r0", 10.0, status="error")
    code, out = run(tmp_path / "a", tmp_path / "b", "--json")
    data = json.loads(out)
    assert code == REGRESSION and data["exit_code"] == 1 and data["pairs"][0]["verdict"] == "error in B"


def test_train_runs_compare_time_and_accuracy(tmp_path):
    for k in range(2):
        train_run(tmp_path / "a" / f"r{k}", 0.010, 60.0, seed=k)
        train_run(tmp_path / "b" / f"r{k}", 0.0101, 57.5, seed=10 + k)  # same speed, 2.5 points worse
    code, out = run(tmp_path / "a", tmp_path / "b")
    assert code == REGRESSION and "step time" in out and "-2.50 points" in out and "**lower**" in out
    assert run(tmp_path / "a", tmp_path / "b", "--accuracy-drop", "3")[0] == PASS


@pytest.mark.parametrize("damage", ["bench_vs_train", "empty", "missing", "corrupt_samples", "bad_threshold"])
def test_bad_input_is_one_error_and_exit_2(tmp_path, capsys, damage):
    a = bench_run(tmp_path / "a" / "r0", 10.0)
    b = bench_run(tmp_path / "b" / "r0", 10.0)
    args = [tmp_path / "a", tmp_path / "b"]
    expected = {"bench_vs_train": "compare bench with bench, train with train", "empty": "no bench or train runs",
                "missing": "no such run or directory", "corrupt_samples": "corrupt raw-samples file",
                "bad_threshold": "is not a number"}[damage]  # fmt: skip
    if damage == "bench_vs_train":
        args[1] = train_run(tmp_path / "t", 0.01, 50.0)
    elif damage == "empty":
        (tmp_path / "empty").mkdir()
        args[1] = tmp_path / "empty"
    elif damage == "missing":
        args[1] = tmp_path / "nope"
    elif damage == "corrupt_samples":
        record.samples_path(b).write_bytes(b"PK\x03\x04 not a zip")
        args = [a, b]
    else:
        args += ["--threshold", "five"]
    code, out = run(*args)
    err = capsys.readouterr().err
    assert code == BAD_INPUT and expected in err and "Traceback" not in err, err


def test_raw_samples_are_read_back_and_a_missing_series_is_named(tmp_path):
    samples.write(tmp_path, {"x": [1.0, 2.0]})
    assert samples.read(tmp_path)["x"].tolist() == [1.0, 2.0]
    with pytest.raises(Exception, match="no series y"):
        samples.read(tmp_path, ["y"])


@pytest.mark.slow
@pytest.mark.timing  # three processes a side: another job on the machine can make one of them an outlier
def test_ci_recipe_flags_an_injected_slowdown_and_passes_the_same_code(tmp_path):
    """docs/comparing.md's CI recipe as a CI job would run it: bench on "main" and on the "branch" three times each,
    interleaved, then `speedlab compare main branch`: the same code passes, a branch 20 ms slower per call fails."""
    overrides = [*TINY_DATA, "model=custom", "model.target=tests.user_models.nets.BranchUnderTest",
                 "model.kwargs.classes=10", "bench.backends=[eager]", "bench.batch_sizes=[8]",
                 "bench.min_time_s=0.3", "monitor.enabled=false"]  # fmt: skip

    def bench(run_dir: Path, slowdown_ms: int) -> None:
        env = {**os.environ, "SPEEDLAB_ARTIFACTS": str(tmp_path / "artifacts"),
               "SPEEDLAB_TEST_SLOWDOWN_MS": str(slowdown_ms)}  # fmt: skip
        proc = subprocess.run([sys.executable, "-m", "speedlab", "bench", *overrides, f"hydra.run.dir={run_dir}"],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]

    for k in range(3):
        bench(tmp_path / "main" / f"r{k}", 0)
        bench(tmp_path / "same" / f"r{k}", 0)
        bench(tmp_path / "slow" / f"r{k}", 20)
    gate = [sys.executable, "-m", "speedlab", "compare", str(tmp_path / "main")]
    same = subprocess.run([*gate, str(tmp_path / "same")], cwd=REPO, capture_output=True, text=True)
    slow = subprocess.run([*gate, str(tmp_path / "slow")], cwd=REPO, capture_output=True, text=True)
    assert same.returncode == 0 and "no significant change" in same.stdout, same.stdout + same.stderr
    assert slow.returncode == 1 and "**slower**" in slow.stdout, slow.stdout + slow.stderr


def test_a_training_run_keeps_every_step_time(trained_tiny):
    result = json.loads((trained_tiny / "result.json").read_text())
    named = result["samples"]
    raw = samples.read(trained_tiny, [named["step_s"], named["step_epoch"]])
    steps, epochs = raw[named["step_s"]], raw[named["step_epoch"]]
    assert len(steps) == result["steps_per_epoch"] * len(result["epochs"]) and set(epochs) == {1.0, 2.0}
    for e in result["epochs"]:  # an epoch's steps add up to (nearly all of) its time
        assert 0.8 * e["train_time_s"] <= steps[epochs == e["epoch"]].sum() <= e["train_time_s"]


def test_fingerprints_keep_what_changes_speed_and_drop_the_rest():
    from speedlab import fingerprint

    def result(**changes):
        config = {"name": "a", "seed": 0, "data": {"root": "/x", "name": "synthetic"}, "trainer": {"batch_size": 64},
                  "bench": {"backends": ["eager", "onnxruntime"], "min_time_s": 1.0,
                            "onnxruntime": {"intra_op_threads": 1}}}  # fmt: skip
        for key, value in changes.items():
            section, name = key.split("__")
            config[section][name] = value
        return {"config": config, "env": {"cpu": {"model": "X", "affinity": 2}, "torch": "2.15"}, "params": 10}

    def cell_key(r, backend="eager"):
        row = {"backend": backend, "precision": "fp32", "batch_size": 8}
        return fingerprint.of_cell(r, row).key(env=False, commit=False)

    base = result()
    assert cell_key(base) == cell_key(result(data__root="/elsewhere")) == cell_key(result(bench__min_time_s=5.0))
    assert cell_key(base) == cell_key(result(bench__onnxruntime={"intra_op_threads": 2}))  # another backend's
    assert cell_key(base, "onnxruntime") != cell_key(result(bench__onnxruntime={"intra_op_threads": 2}), "onnxruntime")
    assert fingerprint.of_train(base).key() != fingerprint.of_train(result(trainer__batch_size=128)).key()
    assert (
        fingerprint.of_train(base).workload_key()
        == fingerprint.of_train(result(trainer__channels_last=True)).workload_key()
    )
