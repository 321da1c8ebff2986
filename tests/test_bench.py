"""bench, profile and report: result.json shape, every registered backend, statistics, bad input, the report."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from speedlab import cli, profiling, samples, stats, timing
from speedlab.bench import backends, levers
from speedlab.bench import command as bench_command
from speedlab.errors import SpeedlabError
from speedlab.export.formats import tensorrt
from speedlab.report import command as report
from tests.conftest import TINY, TINY_DATA, TRAIN_TINY, invoke, tiny_family

FAST = ["bench.min_iters=3", "bench.min_time_s=0.05", "bench.warmup_iters=1", "bench.warmup_min_s=0.0"]
ROW_KEYS = {"backend", "precision", "batch_size", "status", "n", "mean_ms", "std_ms", "p50_ms", "p90_ms", "p95_ms",
            "p99_ms", "max_ms", "min_ms", "too_few_for", "samples", "throughput_per_s", "setup_s", "first_call_ms",
            "peak_memory_bytes", "recompiles"}  # fmt: skip


def run_bench(run_dir: Path, *overrides: str, base: list[str] = TINY) -> dict:
    """A bench run's result.json, with its exit code as `_exit` (1 when a cell failed)."""
    try:
        code = invoke("bench", [*base, *FAST, *overrides, f"hydra.run.dir={run_dir}"])
    except SystemExit as exit_:
        code = exit_.code
    return {**json.loads((run_dir / "result.json").read_text()), "_exit": code, "_dir": str(run_dir)}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One sweep over every registered backend at two batch sizes, fp32 and bf16, with 2 repeats, of LeNet5: the
    harness does not depend on the family, and LeNet5's graphs compile cold in seconds (ConvNeXt's take a minute)."""
    run_dir = tmp_path_factory.mktemp("bench") / "run"
    # One AOTInductor package covers both sizes: one compile, not two.
    return run_bench(
        run_dir, f"bench.backends=[{','.join(backends.names())}]", "bench.batch_sizes=[1,3]",
        "bench.precisions=[fp32,bf16]", "bench.repeats=2", "bench.aotinductor.dynamic_batch=true",
        base=tiny_family("lenet5", "bench"),
    )  # fmt: skip


def cell(result: dict, backend: str, precision: str, batch: int) -> dict:
    return next(
        r for r in result["rows"] if (r["backend"], r["precision"], r["batch_size"]) == (backend, precision, batch)
    )


@pytest.mark.parametrize("backend", backends.names())
def test_every_backend_gets_its_cells(sweep, backend):
    for batch in (1, 3):
        row = cell(sweep, backend, "fp32", batch)
        if backend == "tensorrt" and tensorrt.unavailable_reason():
            assert row["status"] == "skipped" and row["reason"] == tensorrt.unavailable_reason()
            continue
        assert row["status"] == "ok", row
        assert set(row) >= ROW_KEYS and row["n"] >= 3
        assert row["min_ms"] <= row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
        assert row["throughput_per_s"] == pytest.approx(batch * 1e3 / row["p50_ms"])
        assert len(row["repeat_p50_ms"]) == 2 and row["p50_ci95_ms"][0] <= row["p50_ms"] <= row["p50_ci95_ms"][1]
        # Every timed call is kept, one series per repeat, and its median is the repeat's p50.
        raw = samples.read(Path(sweep["_dir"]), row["samples"])
        assert len(raw) == 2 and all(len(v) >= 3 for v in raw.values())
        assert sorted(stats.median(v) for v in raw.values()) == pytest.approx(sorted(row["repeat_p50_ms"]), abs=1e-6)


def test_sweep_records_flops_yardstick_and_unsupported_precisions(sweep):
    assert sweep["kind"] == "bench" and sweep["status"] == "ok" and sweep["flops_per_image"] > 1e5
    assert sweep["yardstick_flops_per_s"]["fp32"] > 1e8
    eager = cell(sweep, "eager", "fp32", 3)
    assert eager["flops"] == 3 * sweep["flops_per_image"] and 0 < eager["efficiency"] < 10
    assert cell(sweep, "eager", "bf16", 1)["status"] == "ok"  # bf16 autocast runs on the CPU
    onnx_bf16 = cell(sweep, "onnxruntime", "bf16", 1)
    assert onnx_bf16["status"] == "skipped" and "fp32 and int8" in onnx_bf16["reason"]
    assert cell(sweep, "inductor", "fp32", 1)["recompiles"] == 0  # compiled once in prepare, never again
    # Energy: the machine's counter, or why there is none (this CI machine has no readable RAPL); never an estimate.
    assert set(sweep["energy"]) in ({"source"}, {"unavailable"})
    ok_cells = [r for r in sweep["rows"] if r["status"] == "ok"]
    assert all(("images_per_joule" in r) == ("source" in sweep["energy"]) for r in ok_cells)


def test_onnxruntime_int8_and_a_failing_backend_do_not_stop_the_sweep(tmp_path, monkeypatch, capsys):
    eager = backends.create("eager")

    def explode(*args, **kwargs):
        raise RuntimeError("backend exploded")

    monkeypatch.setattr(type(eager), "prepare", explode)
    result = run_bench(tmp_path / "run", "bench.backends=[eager,onnxruntime]", "bench.batch_sizes=[2]",
                       "bench.precisions=[int8]")  # fmt: skip
    assert cell(result, "eager", "int8", 2)["status"] == "skipped"
    assert cell(result, "onnxruntime", "int8", 2)["status"] == "ok"
    monkeypatch.setattr(type(eager), "unsupported", lambda self, setup, precision: None)
    result = run_bench(tmp_path / "run2", "bench.backends=[eager,onnxruntime]", "bench.batch_sizes=[2]",
                       "bench.host_to_device=true")  # fmt: skip
    # a failed cell: the sweep finishes, and the exit code says so
    assert result["_exit"] == 1 and result["status"] == "ok" and result["failed_cells"] == 1
    failed = cell(result, "eager", "fp32", 2)
    assert failed["status"] == "error" and "backend exploded" in failed["reason"]
    assert cell(result, "onnxruntime", "fp32", 2)["status"] == "ok"
    assert cell(result, "onnxruntime", "fp32", 2)["host_to_device_ms"] is None  # inputs never move on the CPU
    # In a sweep, every job still runs, and the sweep's exit code says one failed.
    code = invoke("bench", ["-m", *TINY, *FAST, "bench.backends=[eager]", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                            "bench.batch_sizes=[2],[3]"])  # fmt: skip
    assert code == 1 and len(list((tmp_path / "sweep").rglob("result.json"))) == 2
    assert "2 jobs of the sweep failed" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["bench.backends=[eager,tvm]"], "bench.backends: unknown tvm; valid: aotinductor, eager, inductor"),
        (["bench.precisions=[fp8]"], "bench.precisions=['fp8']: valid precisions: fp32, bf16, fp16, int8"),
        (["bench.batch_sizes=[0]"], "bench.batch_sizes=[0]: give one or more sizes >= 1"),
        (["bench.repeats=0"], "bench.repeats=0: must be at least 1"),
        (["bench.concurrency=[1,0]"], "bench.concurrency=[1, 0]: give one or more request counts >= 1"),
        (["bench.levers=[fused]"], "bench.levers: unknown fused; valid: channels_last, half_weights, inference_mode"),
        (["bench.backends=[onnxruntime]", "bench.levers=[channels_last]"],
         "bench.levers: channels_last changes how eager, inductor run the PyTorch model; this sweep runs onnxruntime"),
        (["bench.backends=[eager]", "bench.levers=[half_weights]"],
         "bench.levers: half_weights changes bf16 and fp16 cells only; bench.precisions=['fp32'] has none"),
        (["+exp=cpu_fast"], "bench's own levers: bench.backends=[inductor]"),
    ],
)  # fmt: skip
def test_bench_bad_input_is_one_clear_error(run_main, overrides, message):
    out = run_main("bench", *TINY, *overrides)
    assert out.returncode == 1 and message in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_timing_statistics():
    latency = timing.summarise([1.0, 2.0, 3.0, 4.0, 100.0], first_call_ms=50.0)
    assert latency.p50_ms == 3.0 and latency.min_ms == 1.0 and latency.n == 5 and latency.first_call_ms == 50.0
    assert latency.p99_ms > latency.p90_ms > latency.p50_ms
    assert stats.median_interval([5.0, 1.0, 3.0]) == (3.0, 1.0, 5.0)  # few values: the whole range
    median, low, high = stats.median_interval([float(i) for i in range(100)])
    assert low < median < high and 35 <= low <= 45 and 55 <= high <= 65


def test_harness_stops_on_count_and_time():
    calls = []
    latency = timing.measure(lambda: calls.append(1), torch.device("cpu"), timing.TimingCfg(2, 0.0, 7, 0.0))
    assert latency.n == 7 and len(calls) == 1 + 1 + 7  # first call, warm-up to 2, then 7 timed


def test_concurrent_requests_overlap_and_every_answer_counts():
    """Two requests of a call that waits 20 ms without holding the GIL: twice the answers per second of one, every
    answer's latency kept; a request that fails is raised in the caller."""
    cfg = timing.TimingCfg(warmup_iters=1, warmup_min_s=0.0, min_iters=10, min_time_s=0.3)
    wait = lambda: __import__("time").sleep(0.02)  # noqa: E731
    one, two = timing.measure_concurrent([wait], cfg), timing.measure_concurrent([wait, wait], cfg)
    assert two.requests == 2 and two.answers == two.latency.n and len(two.latency.samples_ms) == two.answers
    assert 1.6 < two.answers_per_s / one.answers_per_s < 2.4 and two.latency.p50_ms == pytest.approx(20, abs=8)

    def fails() -> None:
        raise RuntimeError("request failed")

    with pytest.raises(RuntimeError, match="request failed"):
        timing.measure_concurrent([wait, fails], cfg)


def test_concurrency_cells_count_images_per_second_over_the_wall_time(tmp_path, all_cores):
    """bench.concurrency=[1,2]: a cell per count for the backends that serve requests at once; torch's threads are
    split among eager's requests and restored after; a backend that serves one at a time is skipped, saying so."""
    threads = torch.get_num_threads()
    result = run_bench(tmp_path / "run", "bench.backends=[eager,onnxruntime]", "bench.batch_sizes=[2]",
                       "bench.concurrency=[1,2]", base=tiny_family("lenet5", "bench"))  # fmt: skip
    assert result["_exit"] == 0 and torch.get_num_threads() == threads
    rows = {(r["backend"], r["concurrency"]): r for r in result["rows"]}
    assert set(rows) == {("eager", 1), ("eager", 2), ("onnxruntime", 1), ("onnxruntime", 2)}
    for (_, requests), row in rows.items():
        assert row["status"] == "ok" and row["n"] >= 3
        raw = samples.read(Path(result["_dir"]), row["samples"])
        assert sum(len(v) for v in raw.values()) == row["n"]
        if requests == 1:
            assert row["throughput_per_s"] == pytest.approx(2e3 / row["p50_ms"])
        else:  # answers over the wall time, not a batch per p50 (the requests overlap)
            assert row["throughput_per_s"] == pytest.approx(2 * row["n"] / row["wall_s"])
            assert row["samples"][0].endswith(".c2.r0")
    assert rows[("eager", 2)]["threads_per_request"] == max(1, threads // 2)
    out = tmp_path / "report"  # latency tables and plots from one request at a time; throughput against requests
    assert report.main([result["_dir"], "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "| Changes | Time BS 2 | Val accuracy |" in text and text.count("| eager (fp32) |") == 1
    assert "| Backend | Precision | Batch | In flight | Status |" in text and "| eager | fp32 | 2 | 2 | ok |" in text
    assert (out / "concurrency_run.png").read_bytes()[:4] == b"\x89PNG"
    setup = backends.BenchSetup.for_job(torch.nn.Identity(), cli.compose("bench", TINY), torch.device("cpu"), None,
                                        tmp_path)  # fmt: skip
    reason = bench_command._concurrency_unsupported(backends.create("inductor"), setup, 2)
    assert reason == "inductor runs one request at a time here (concurrent requests: eager, onnxruntime, openvino)"


def test_an_openvino_precision_this_cpu_lacks_is_refused_when_openvino_is_named(tmp_path, monkeypatch):
    ov = pytest.importorskip("openvino", reason="openvino is not installed (requirements-openvino.txt)")

    class NoBf16Core:
        def get_property(self, device: str, key: str) -> list[str]:
            return ["FP32", "INT8", "BIN"]

    monkeypatch.setattr(ov, "Core", NoBf16Core)
    cfg = cli.compose("bench", tiny_family("lenet5", "bench"))
    setup = backends.BenchSetup.for_job(torch.nn.Identity(), cfg, torch.device("cpu"), None, tmp_path)
    with pytest.raises(SpeedlabError) as refused:
        backends.refuse(["eager", "openvino"], setup, ["fp32", "bf16"])
    assert str(refused.value) == (
        "bench.precisions=['fp32', 'bf16']: openvino cannot run bf16 here: this CPU has no bf16 in OpenVINO's CPU "
        "plugin (it reports FP32, INT8, BIN; bf16 needs AVX512_BF16 or AMX). Drop bf16 from bench.precisions, or "
        "openvino from bench.backends"
    )
    backends.refuse(["installed"], setup, ["fp32", "bf16"])  # a set: the cell is skipped with the reason instead
    assert "no bf16" in backends.create("openvino").unsupported(setup, "bf16")
    backends.refuse(["openvino"], setup, ["fp32"])


def test_profile_writes_phase_tables_and_a_chrome_trace(tmp_path, capsys):
    invoke("profile", [*TINY, *TRAIN_TINY, "profile.steps=2", "profile.warmup=1", f"hydra.run.dir={tmp_path}"])
    result = json.loads((tmp_path / "result.json").read_text())
    phases = {"forward", "backward", "optimizer", "inference"}
    assert result["kind"] == "profile" and set(result["tables"]) == phases
    for phase, rows in result["tables"].items():
        assert rows and sum(r["share"] for r in rows) == pytest.approx(1.0), phase
        assert {"op", "calls", "self_ms", "avg_us", "share", "share_of_step", "cpu_total_ms"} <= set(rows[0])
    backward_ops = {r["op"] for r in result["tables"]["backward"]}
    assert "aten::convolution_backward" in backward_ops and "aten::_foreach_add_" not in backward_ops
    step_shares = sum(r["share_of_step"] for p in ("forward", "backward", "optimizer") for r in result["tables"][p])
    assert 0.5 < step_shares < 1.05  # the events' self times fill most of the profiled step (Python fills the rest)
    split = result["split"]
    assert set(split["shares"]) == {"forward", "backward", "optimizer", "other"}
    assert sum(split["parts_us"].values()) == pytest.approx(split["step_us"], rel=1e-6)
    assert all(v >= 0 for v in split["parts_us"].values())
    trace = json.loads(Path(result["trace"]).read_text())
    assert trace["traceEvents"] and Path(result["trace"]).stat().st_size < 20e6
    out = capsys.readouterr().out
    assert "| Op | Calls/step | × Avg per call | = Total/step | % of step |" in out
    assert "| other: Python, dispatch, autograd engine, allocation |" in out


def test_the_split_takes_one_median_step_so_its_parts_never_exceed_its_wall():
    # Per-phase medians of these steps add up to 9 µs against a median total of 7: the CI run on 2026-12-03 met this
    # (phases 17.9 ms against a 17.3 ms step). One whole step keeps the parts inside its wall.
    steps = [{"forward": 5, "backward": 1, "total": 6}, {"forward": 1, "backward": 6, "total": 7},
             {"forward": 5, "backward": 5, "total": 10}]  # fmt: skip
    step = profiling.median_step(steps)
    assert step == steps[1]
    rows = {"forward": [{"self_ms": 1e-3, "compute": True}], "backward": [{"self_ms": 6e-3, "compute": True}]}
    split = profiling.step_split(rows, {"forward": 1.0, "backward": 6.0}, step, ["forward", "backward"])
    assert sum(split["parts_us"].values()) == pytest.approx(split["step_us"]) and split["parts_us"]["other"] == 0


def test_report_renders_training_inference_html_and_csv(tmp_path, sweep, capsys, trained_tiny):
    runs = tmp_path / "runs"
    shutil.copytree(trained_tiny, runs / "vanilla")  # the shared trained model is a Vanilla run (2 epochs)
    invoke("train", [*TINY, *TRAIN_TINY, "trainer.epochs=2", "+exp=amp", f"hydra.run.dir={runs / 'amp'}"])
    invoke("train", [*TINY, *TRAIN_TINY, "+exp=amp", f"hydra.run.dir={runs / 'amp-1-epoch'}"])
    run_bench(runs / "bench", "bench.backends=[eager,onnxruntime]", "bench.batch_sizes=[1,3]")
    out = tmp_path / "report"
    assert report.main([str(runs), "--out", str(out), "--html"]) == 0
    text = (out / "report.md").read_text()
    assert "| Changes | Batch | Precision | Train epoch time | Val accuracy | Speed-up vs vanilla |" in text
    assert "| Vanilla | 32 | fp32 |" in text and "| AMP (bf16) | 32 | bf16 |" in text and "1.00×" in text
    # The 1-epoch AMP run is its own row, with no speed-up: its Vanilla trained 2 epochs.
    assert text.count("| AMP (bf16) | 32 | bf16 |") == 2
    assert "- AMP (bf16) (batch 32): the Vanilla runs differ in trainer.epochs: 2 vs 1" in text
    assert "| Changes | Time BS 3 | Time BS 1 | Val accuracy |" in text and "| onnxruntime (fp32) |" in text
    assert "| Backend | Precision | Batch | Status | n | p50 | p90 | p95 | p99 | max |" in text
    assert text.count("Measured on: ") == 2
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert "training_speedup_memory.png" in pngs and any(p.startswith("inference_") for p in pngs)
    assert any(p.startswith("latency_") for p in pngs)  # every timed call, read back from samples.npz
    assert all((out / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    page = (out / "report.html").read_text()  # one file: the plots inside, nothing fetched
    assert page.count("data:image/png;base64,") == len([p for p in pngs if p in text]) and 'src="http' not in page
    assert "<th>Speed-up vs vanilla</th>" in page
    with open(out / "table-training.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [(r["Changes"], r["Speed-up vs vanilla"]) for r in table if r["Runs"] == "1"][:1] and len(table) == 3
    (runs / "bench" / "samples.npz").write_bytes(b"not a zip")  # an unreadable samples file costs only its plot
    assert report.main([str(runs / "bench"), "--out", str(tmp_path / "again")]) == 0
    assert "Latency distribution left out: " in (tmp_path / "again" / "report.md").read_text()


def test_bench_runs_the_files_an_export_run_made_not_new_ones(tmp_path, trained_tiny, exported_tiny):
    result = run_bench(tmp_path / "bench", f"weights={trained_tiny}", f"bench.export_dir={exported_tiny}",
                       "bench.backends=[onnxruntime]", "bench.precisions=[fp32,int8]",
                       "bench.batch_sizes=[2]")  # fmt: skip
    assert result["_exit"] == 0 and result["model_source"].startswith("checkpoint ")
    assert {(r["precision"], r["status"]) for r in result["rows"]} == {("fp32", "ok"), ("int8", "ok")}
    assert not (tmp_path / "artifacts" / "cache" / "export").exists()  # nothing exported again


def test_report_bad_input(run_main, tmp_path):
    out = run_main("report", str(tmp_path / "nope"))
    assert out.returncode == 1 and "no such run directory" in out.stderr
    out = run_main("report", "--compare", str(tmp_path), str(tmp_path))  # moved to its own command
    assert out.returncode == 1 and f"python -m speedlab compare {tmp_path} {tmp_path}" in out.stderr


def test_profile_shows_only_the_columns_this_device_has(tmp_path, capsys):
    invoke("profile", [*TINY, *TRAIN_TINY, "profile.steps=1", "profile.warmup=0", f"hydra.run.dir={tmp_path}"])
    out = capsys.readouterr().out
    assert "| Op | Calls/step |" in out and ("CUDA self" in out) == torch.cuda.is_available()


def test_report_of_a_single_run_draws_no_speed_up_it_cannot_compute(tmp_path):

    run_dir = tmp_path / "runs" / "one"
    invoke("train", [*TINY, *TRAIN_TINY, "+exp=amp", "trainer.max_steps=2", f"hydra.run.dir={run_dir}"])
    out = tmp_path / "report"
    assert report.main([str(tmp_path / "runs"), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "| AMP (bf16) |" in text and "0.00×" not in text
    assert "- AMP (bf16) (batch 32): no Vanilla run of this model" in text
    assert (out / "training_speedup_memory.png").is_file()  # the memory panel still has something to show


def test_a_failed_export_leaves_the_shared_eager_model_where_every_cell_expects_it(tmp_path, monkeypatch):
    from speedlab.export.formats import onnx as onnx_export

    def broken(*args, **kwargs):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(onnx_export, "export_onnx", broken)
    result = run_bench(tmp_path / "run", "bench.backends=[onnxruntime,eager]", "bench.batch_sizes=[2]")
    assert cell(result, "onnxruntime", "fp32", 2)["status"] == "error"
    assert cell(result, "eager", "fp32", 2)["status"] == "ok"
    assert result["_exit"] == 1


@pytest.mark.slow  # a fresh profile process: ~8 s
def test_profile_prints_no_profiler_chatter(run_cli):
    out = run_cli("profile", *TINY, "profile.steps=1", "profile.warmup=0")
    assert out.returncode == 0, out.stderr
    assert "profiler_start" not in out.stderr and "gpuGetDeviceCount" not in out.stderr


def _logits(output) -> torch.Tensor:
    """One inference's logits, whatever the backend returns: a tensor, ONNX Runtime's list of arrays, or
    OpenVINO's result dict."""
    if isinstance(output, torch.Tensor):
        return output.float()
    if hasattr(output, "values"):
        output = list(output.values())
    return torch.as_tensor(output[0]).float()


def _lenet_setup(tmp_path: Path, overrides: list[str]):
    """A seeded LeNet5, the bench setup of `overrides` around it, and eager fp32's logits of the batch of 3."""
    from speedlab import models
    from speedlab.data.build import describe

    cfg = cli.compose("bench", [*tiny_family("lenet5", "bench"), *overrides])
    spec = describe(cfg.data)
    torch.manual_seed(0)
    model = models.build(cfg.model, spec).eval()
    setup = backends.BenchSetup.for_job(model, cfg, torch.device("cpu"), spec, tmp_path)
    with torch.no_grad():
        return model, setup, model(setup.inputs(3))


@pytest.mark.parametrize(
    ("backend", "options", "notes"),
    [
        ("inductor", ["bench.inductor.freezing=true"], {"freezing": True, "cpp_wrapper": False}),
        ("onnxruntime", ["bench.onnxruntime.spinning=true", "bench.onnxruntime.intra_op_threads=1",
                         "bench.onnxruntime.graph_optimization=basic"],
         {"ort_spinning": True, "ort_intra_op_threads": 1, "ort_graph_optimization": "basic"}),
        ("onnxruntime", [], {"ort_spinning": False, "ort_graph_optimization": "all"}),
        ("openvino", [], {"hint": "LATENCY", "inference_precision": "f32"}),
        # OpenVINO runs no more streams than the cores it may use (one per pytest worker: tests/conftest.py).
        ("openvino", ["bench.openvino.hint=THROUGHPUT", "bench.openvino.streams=2", "bench.openvino.threads=2"],
         {"hint": "THROUGHPUT", "streams": min(2, len(os.sched_getaffinity(0))), "inference_precision": "f32"}),
        pytest.param("inductor", ["bench.inductor.freezing=true", "bench.inductor.cpp_wrapper=true"],
                     {"cpp_wrapper": True}, marks=pytest.mark.slow, id="inductor-cpp-wrapper"),
    ],
)  # fmt: skip
def test_each_backend_lever_matches_eager_and_is_recorded(tmp_path, backend, options, notes):
    """A backend setting is a speed lever only if the answers stay the same: fp32 logits against eager's."""
    if backend == "openvino":
        pytest.importorskip("openvino", reason="openvino is not installed (requirements-openvino.txt)")
    model, setup, expected = _lenet_setup(tmp_path, options)
    prepared = backends.create(backend).prepare(setup, 3, "fp32")
    torch.testing.assert_close(_logits(prepared.run()), expected, rtol=1e-4, atol=1e-5)
    assert notes.items() <= prepared.notes.items()


@pytest.mark.slow
def test_isolation_runs_each_backend_alone_and_survives_one_that_crashes(tmp_path):
    """bench.isolate: a process per backend; the model dies (exit 139) when torch.compile traces it, which takes
    down inductor's process only: its cells say so, the others are measured, and the run exits 1."""
    result = run_bench(tmp_path / "run", "model=custom", "model.target=tests.user_models.nets.DiesWhenCompiled",
                       "model.kwargs.classes=10", "bench.backends=[eager,inductor,onnxruntime]",
                       "bench.batch_sizes=[2]", "bench.isolate=true", base=TINY_DATA)  # fmt: skip
    by_backend = {r["backend"]: r for r in result["rows"]}
    assert result["_exit"] == 1 and list(by_backend) == ["eager", "inductor", "onnxruntime"]
    assert by_backend["eager"]["status"] == by_backend["onnxruntime"]["status"] == "ok"
    assert by_backend["eager"]["isolated"] and (tmp_path / "run" / "isolated" / "eager" / "result.json").is_file()
    assert by_backend["inductor"]["status"] == "error" and "exited with 139" in by_backend["inductor"]["reason"]
    assert samples.read(tmp_path / "run", by_backend["onnxruntime"]["samples"])  # the child's calls, kept here


def test_the_default_backends_are_those_that_run_here_and_all_is_every_one(tmp_path):
    cfg = cli.compose("bench", tiny_family("lenet5", "bench"))
    assert cfg.bench.backends == ["installed"]
    setup = backends.BenchSetup.for_job(torch.nn.Identity(), cfg, torch.device("cpu"), None, tmp_path)
    installed = backends.expand(["installed"], setup, ["fp32"])
    assert {"eager", "inductor", "onnxruntime"} <= set(installed)
    assert ("tensorrt" in installed) == (tensorrt.unavailable_reason() is None)  # no wall of skipped rows on a CPU
    everything = backends.expand(["eager", "all"], setup, ["fp32"])
    assert everything == ["eager", *(n for n in backends.names() if n != "eager")]


# An inference lever is a speed lever only if the answers stay: fp32 levers match eager fp32 to 1e-4 (they reorder
# memory or skip autograd bookkeeping); half weights compute every layer in bf16 (8 bits of mantissa, norms
# included), so their logits stay within 5 % of the largest fp32 logit.
LEVER_TOLERANCE = {"fp32": {"rtol": 1e-4, "atol": 1e-5}, "bf16": {"rtol": 0.0, "atol": 0.05}}


# Every lever on eager; on inductor (a compile each, so the slow suite) the one that changes the compiled graph's
# memory layout. AOTInductor's parity against eager is export's check (test_export, 1e-4).
@pytest.mark.parametrize(
    ("backend", "lever"),
    [*(("eager", name) for name in levers.names()),
     pytest.param("inductor", "channels_last", marks=pytest.mark.slow, id="inductor-channels_last")],
)  # fmt: skip
def test_each_inference_lever_keeps_the_answers_and_is_recorded(tmp_path, backend, lever):
    model, setup, expected = _lenet_setup(tmp_path, [f"bench.levers=[{lever}]"])
    precision = "bf16" if lever == "half_weights" else "fp32"
    prepared = backends.create(backend).prepare(setup, 3, precision)
    got = _logits(prepared.run())
    tolerance = LEVER_TOLERANCE[precision]
    atol = tolerance["atol"] * (expected.abs().max().item() if precision != "fp32" else 1.0)
    torch.testing.assert_close(got, expected, rtol=tolerance["rtol"], atol=atol)
    assert prepared.notes["levers"] == [lever]
    assert next(model.parameters()).dtype == torch.float32 and model.features[3].weight.is_contiguous()  # unchanged
    assert backends.create(backend).prepare(setup, 3, "fp32" if lever == "half_weights" else precision).notes[
        "levers"
    ] == ([] if lever == "half_weights" else [lever])  # half weights leave fp32 cells alone


def test_a_missing_openvino_is_an_unsupported_cell_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "openvino", None)

    cfg = cli.compose("bench", tiny_family("lenet5", "bench"))
    setup = backends.BenchSetup.for_job(torch.nn.Identity(), cfg, torch.device("cpu"), None, tmp_path)
    reason = backends.create("openvino").unsupported(setup, "fp32")
    assert reason == "openvino is not installed (an optional extra: pip install -r requirements-openvino.txt)"


@pytest.mark.parametrize(
    ("override", "message"),
    [("bench.inductor.freeze=true", "Key 'freeze' not in 'InductorOptions'"),
     ("bench.onnxruntime.graph_optimization=max", "expected one of [disable, basic, extended, all]"),
     ("bench.openvino.hint=FAST", "expected one of [LATENCY, THROUGHPUT]")],
)  # fmt: skip
def test_an_unknown_backend_option_is_one_clear_error(run_main, override, message):
    outcome = run_main("bench", *TINY, override)
    assert outcome.returncode != 0 and message in outcome.stderr and "Traceback" not in outcome.stderr


@pytest.mark.parametrize(
    ("fault", "status", "reason"),
    [pytest.param("hang", "timeout", "still running after bench.cell_timeout_s=8.0 s", marks=pytest.mark.slow),
     ("oom", "oom", "MemoryError"),
     ("raise", "error", "RuntimeError: injected")],
)  # fmt: skip
@pytest.mark.drill("6. bench cell faults")
def test_a_cell_that_hangs_runs_out_of_memory_or_raises_is_recorded_and_the_sweep_goes_on(
    run_main, tmp_path, monkeypatch, fault, status, reason, drill
):
    import time

    def faulty(self, setup, batch_size, precision):
        if fault == "hang":
            time.sleep(60)
        raise MemoryError("injected") if fault == "oom" else RuntimeError("injected")

    monkeypatch.setattr(type(backends.create("eager")), "prepare", faulty)
    started = time.monotonic()
    outcome = run_main("bench", *TINY, *FAST, "bench.backends=[eager,onnxruntime]", "bench.batch_sizes=[2]",
                       "bench.cell_timeout_s=8", f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    assert time.monotonic() - started < 45  # the hang was cut short
    assert outcome.returncode == 1 and f"1 of 2 cells failed: eager fp32 batch 2 ({status})" in outcome.stderr
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert cell(result, "eager", "fp32", 2)["status"] == status and reason in cell(result, "eager", "fp32", 2)["reason"]
    assert cell(result, "onnxruntime", "fp32", 2)["status"] == "ok"  # the next cell ran as usual
    injected = {"hang": "a 60 s sleep, with bench.cell_timeout_s=8", "oom": "MemoryError", "raise": "RuntimeError"}
    drill(injected=f"the eager cell's prepare: {injected[fault]}",
          did=f"cell recorded `{status}` ({reason}); the ORT cell after it ran ok; failed_cells=1, exit code 1 "
              f"(in {time.monotonic() - started:.0f} s)",
          lost="nothing (the other cells' results)")  # fmt: skip
