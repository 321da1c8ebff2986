"""The study runner and the scripts built on it: rows run in fresh processes, interleaved, each study writing its
own docs/results/<study>.md and .csv; every script answers --help (slow suite: each starts a Python with torch)."""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from speedlab import study
from speedlab.study import Outcome, Row
from tests.conftest import REPO, TINY, TRAIN_TINY

SCRIPTS = sorted((REPO / "scripts").glob("*.py"))


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_study_writes_its_table_as_markdown_and_csv_naming_the_machine(tmp_path):
    rows = [["a", "1.00 s"], ["b", "2.00 s"]]
    md, csv_path = study.write("demo", ["Row", "Time"], rows, title="Demo", machine="Some CPU, 2 cores, torch 2.15.0",
                               notes=["a note"], results_dir=tmp_path)  # fmt: skip
    text = md.read_text()
    assert text.startswith("# Demo\n") and "on Some CPU, 2 cores" in text and "| b | 2.00 s |" in text
    assert list(csv.reader(csv_path.open())) == [["Row", "Time"], ["a", "1.00 s"], ["b", "2.00 s"]]


def test_a_study_writes_its_further_tables_as_sections_and_csv_files(tmp_path):
    extra = study.Table("memory", "Step memory", ["Row", "MiB"], [["a", "55.3"]], notes=["exact"])
    md, _ = study.write("demo", ["Row"], [["a"]], title="Demo", machine="CPU", more=[extra], results_dir=tmp_path)
    assert "## Step memory\n\n| Row | MiB |" in md.read_text() and "exact" in md.read_text()
    assert list(csv.reader((tmp_path / "demo-memory.csv").open())) == [["Row", "MiB"], ["a", "55.3"]]


def test_medians_and_results_count_only_successful_runs(tmp_path):
    row = Row("x", "train")
    ok = {"status": "ok", "t": 2.0}
    outcomes = [Outcome(row, 0, tmp_path, 0, {**ok, "t": 1.0}, 1.0), Outcome(row, 1, tmp_path, 0, ok, 1.0),
                Outcome(row, 2, tmp_path, 1, {"status": "failed", "t": 99.0}, 1.0)]  # fmt: skip
    assert study.median(outcomes, row, "t") == 1.5 and len(study.results(outcomes, row)) == 2


def test_bench_train_rows_come_from_the_experiments_with_their_own_overrides():
    rows = _script("bench_train").parse_rows("vanilla,cpu_fast[trainer.batch_size=128 optim.lr=2e-3]", ["seed=1"])
    assert [r.label for r in rows] == ["vanilla", "cpu_fast[trainer.batch_size=128 optim.lr=2e-3]"]
    assert rows[1].overrides == ("+exp=cpu_fast", "+preset=quick", "trainer.batch_size=128", "optim.lr=2e-3", "seed=1")


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_script_answers_help(script):
    out = subprocess.run([sys.executable, str(script), "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "usage" in out.stdout.lower(), out.stderr[-500:]


def test_demo_plans_vanilla_against_the_machines_best_configuration():
    """`make demo` compares like with like: both runs get the same batch size and learning rate."""
    out = subprocess.run([sys.executable, "scripts/demo.py", "--dry-run"], cwd=REPO, capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "Vanilla against cpu_fast on the quick preset (trainer.batch_size=256 optim.lr=2e-3)" in out.stdout


@pytest.mark.slow
def test_bench_train_runs_interleaved_and_writes_its_study(tmp_path):
    tiny = [o for o in [*TINY, *TRAIN_TINY] if o != "+preset=quick"] + ["trainer.max_steps=2"]
    out = subprocess.run(
        [sys.executable, "scripts/bench_train.py", "--exps", "vanilla,amp", "--repeats", "1", "--study", "smoke",
         "--results-dir", str(tmp_path), "--", *tiny],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "SPEEDLAB_ARTIFACTS": str(tmp_path / "artifacts")},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    rows = list(csv.reader((tmp_path / "smoke.csv").open()))
    assert rows[0][:4] == ["Changes", "Batch", "Train epoch time", "Speed-up"]
    assert [r[0] for r in rows[1:]] == ["Vanilla", "AMP (bf16)"] and rows[1][3] == "1.00×"
    assert "Measured" in (tmp_path / "smoke.md").read_text()


@pytest.mark.slow
def test_bench_export_runs_through_the_study_and_writes_its_table(tmp_path):
    tiny = [o for o in TINY if o != "+preset=quick"] + ["export.parity_batch_size=16"]
    out = subprocess.run(
        [sys.executable, "scripts/bench_export.py", "--activations", "gelu", "--exporters", "torchscript",
         "--repeats", "1", "--study", "smoke-export", "--results-dir", str(tmp_path), "--", *tiny],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "SPEEDLAB_ARTIFACTS": str(tmp_path / "artifacts")},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    rows = list(csv.reader((tmp_path / "smoke-export.csv").open()))
    assert [r[2] for r in rows[1:]] == ["ONNX fp32", "ONNX int8"] and rows[1][3] == "ok"


def _run_script(tmp_path: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SPEEDLAB_ARTIFACTS": str(tmp_path / "artifacts")}
    return subprocess.run([sys.executable, f"scripts/{script}", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env=env)  # fmt: skip


@pytest.mark.slow
def test_bench_fairness_runs_its_three_modes_and_writes_its_table(tmp_path):
    tiny = [o for o in TINY if o != "+preset=quick"] + ["bench.min_time_s=0.05", "bench.warmup_min_s=0.0"]
    out = _run_script(tmp_path, "bench_fairness.py", "--rounds", "1", "--backends", "eager", "--study", "smoke",
                      "--results-dir", str(tmp_path), "--", *tiny)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    rows = list(csv.reader((tmp_path / "smoke.csv").open()))
    assert [r[:2] for r in rows[1:]] == [["eager", "1"], ["eager", "64"]] and rows[1][5] != "–"


@pytest.mark.slow
def test_parity_study_runs_every_pair_and_writes_its_tables(tmp_path):
    out = _run_script(tmp_path, "parity_study.py", "--epochs", "1", "--study", "smoke", "--results-dir", str(tmp_path),
                      "--", "data.train_size=64", "data.val_size=32", "trainer.batch_size=32")  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    rows = list(csv.reader((tmp_path / "smoke.csv").open()))
    assert len(rows) == 7 and rows[1][2] == "identical", rows[1]
    assert "mean training loss per epoch" in (tmp_path / "smoke.md").read_text()


@pytest.mark.slow
def test_bench_families_takes_a_family_through_every_command(tmp_path):
    out = _run_script(tmp_path, "bench_families.py", "--families", "lenet5", "--study", "smoke", "--results-dir",
                      str(tmp_path))  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    rows = list(csv.reader((tmp_path / "smoke.csv").open()))
    assert rows[1][0] == "lenet5" and "% top-1" in rows[1][3]


@pytest.mark.slow
def test_bench_data_measures_both_feeds_and_writes_its_table(tmp_path):
    out = _run_script(tmp_path, "bench_data.py", "--classes", "4", "--train-per-class", "8", "--batch-size", "8",
                      "--resolution", "32", "--workers", "0", "--epochs", "1", "--study", "smoke", "--results-dir",
                      str(tmp_path))  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    rows = list(csv.reader((tmp_path / "smoke.csv").open()))
    assert [r[0] for r in rows[1:]] == ["data.feed=device", "data.feed=loader"] and rows[2][2] == "1.0×"


@pytest.mark.slow
def test_bench_monitor_measures_each_interval_and_writes_its_table(tmp_path):
    out = _run_script(tmp_path, "bench_monitor.py", "--rounds", "1", "--block-s", "0.2", "--intervals", "0.5,0.05",
                      "--study", "smoke", "--results-dir", str(tmp_path))  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    rows = list(csv.reader((tmp_path / "smoke.csv").open()))
    assert [r[0] for r in rows[1:]] == ["off", "every 0.5 s", "every 0.05 s"]


@pytest.mark.slow
def test_bench_activations_writes_speed_saved_bytes_and_step_memory(tmp_path):
    out = _run_script(tmp_path, "bench_activations.py", "--shape", "2,4,4,8", "--reps", "2", "--names",
                      "relu,gelu,fastswish_autograd", "--study", "smoke", "--results-dir", str(tmp_path))  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    speed = list(csv.reader((tmp_path / "smoke.csv").open()))
    assert [(r[0], r[1]) for r in speed[1:3]] == [("relu", "eager"), ("relu", "compiled")] and speed[1][4] == "1.00×"
    saved = {r[0]: r[1] for r in csv.reader((tmp_path / "smoke-saved.csv").open())}
    assert saved["relu"] == saved["fastswish_autograd"] == "4.00"  # exact: one fp32 tensor per element
    assert (tmp_path / "smoke-step-memory.csv").is_file()


@pytest.mark.slow
def test_check_bench_harness_compares_with_torch_timer_and_writes_its_table(tmp_path):
    out = _run_script(tmp_path, "check_bench_harness.py", "--rounds", "2", "--min-time", "0.05", "--study", "smoke",
                      "--results-dir", str(tmp_path), "--", *TINY[1:], "bench.batch_sizes=[1]")  # fmt: skip
    rows = list(csv.reader((tmp_path / "smoke.csv").open()))
    assert rows[0][:3] == ["Batch", "Harness p50", "Timer median"] and rows[1][0] == "1"
    assert out.returncode == (0 if rows[1][5] == "ok" else 1), out.stderr[-2000:]


@pytest.mark.slow
def test_fault_drill_writes_a_row_per_scenario_it_ran(tmp_path):
    out = _run_script(tmp_path, "fault_drill.py", "--tiny", "--only", "bad_files", "--study", "smoke",
                      "--results-dir", str(tmp_path))  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    rows = list(csv.reader((tmp_path / "smoke.csv").open()))
    assert len(rows) == 9 and all(r[0] == "7. inspect" and r[4] == "pass" for r in rows[1:])  # test_inspect's 8 files


@pytest.mark.slow
def test_bench_small_runs_each_part_and_writes_its_tables_and_plots(tmp_path):
    out = _run_script(tmp_path, "bench_small.py", "--rows", "by the book (,Vanilla", "--mlp-epochs", "120",
                      "--lenet-epochs", "1", "--lenet-images", "600", "--sizes", "4,8", "--widths", "8",
                      "--width-epochs", "100", "--repeats", "1", "--study", "smoke", "--results-dir",
                      str(tmp_path))  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    mlp = list(csv.reader((tmp_path / "smoke.csv").open()))
    assert [r[0] for r in mlp[1:]] == ["by the book (reference twin)", "Vanilla"] and mlp[1][3] == "1.00×"
    assert [r[0] for r in csv.reader((tmp_path / "smoke-lenet.csv").open())][1:] == ["Vanilla"]
    assert len(list(csv.reader((tmp_path / "smoke-vanilla.csv").open()))) == 3
    passes = {r[0] for r in csv.reader((tmp_path / "smoke-lenet-onednn.csv").open())}  # oneDNN's verbose log
    assert {"forward_training", "backward_data", "backward_weights"} <= passes
    text = (tmp_path / "smoke.md").read_text()
    assert "Where a by-the-book MLP step goes" in text
    for png in ("smoke-ops_vs_size.png", "smoke-mlp_width.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({png})" in text


@pytest.mark.slow
def test_bench_inference_writes_a_row_per_cell_with_its_speed_up_over_eager(tmp_path):
    fast = ["bench.batch_sizes=[1]", "bench.repeats=1", "bench.min_time_s=0.05", "bench.warmup_min_s=0.0"]
    out = _run_script(tmp_path, "bench_inference.py", "--studies", "batch-one", "--results-dir", str(tmp_path), "--",
                      *TINY[1:], *fast)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    rows = list(csv.reader((tmp_path / "inference-batch-one.csv").open()))
    assert [r[1] for r in rows[1:]] == ["eager", "inductor", "onnxruntime", "openvino"] and rows[1][9] == "1.00×"
    assert "bench.onnxruntime.intra_op_threads=1" in (tmp_path / "inference-batch-one.md").read_text()


@pytest.mark.slow
def test_bench_depthwise_times_each_part_per_stage(tmp_path):
    out = _run_script(tmp_path, "bench_depthwise.py", "--batch", "2", "--resolution", "16", "--dims", "4,8",
                      "--min-time", "0.01", "--study", "smoke", "--results-dir", str(tmp_path))  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    rows = list(csv.reader((tmp_path / "smoke.csv").open()))
    assert [r[:2] for r in rows[1:]] == [["1", "2 × 4 × 4 × 4"], ["2", "2 × 8 × 2 × 2"]]
    assert rows[0][5] == "weight grad, fast layer" and all(r[-1].endswith("×") for r in rows[1:])
