"""`speedlab inspect`: the summary of an ONNX file or engine sidecar, serving with netron, and its clear errors."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import torch

from speedlab import config, models
from speedlab.data.build import describe
from speedlab.export import inspection, onnx_export
from tests.conftest import REPO


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = config.compose("export", ["+preset=quick", "export.onnx_exporter=torchscript"])
    path = tmp_path_factory.mktemp("inspect") / "model.onnx"
    model = models.build(cfg.model, describe(cfg.data)).eval()
    onnx_export.export_onnx(model, torch.randn(2, 3, 64, 64), path, cfg.export, external_data=False)
    return path


def test_summary_lists_io_op_counts_and_parameters(onnx_file, run_main):
    out = run_main("inspect", str(onnx_file), "--summary-only")
    assert out.returncode == 0, out.stderr
    assert "opset 18" in out.stdout and "input  input: float ['batch', 3, 64, 64]" in out.stdout
    assert "output output: float ['batch', 200]" in out.stdout
    summary = inspection.summarise(onnx_file)
    assert summary["op_counts"]["Conv"] == 10 and summary["op_counts"]["LayerNormalization"] == 11
    assert ["Conv", "10"] in [line.split() for line in out.stdout.splitlines()]  # a row of the op table
    assert summary["parameters"] > 1_000_000 and summary["parameter_bytes"] == 4 * summary["parameters"]
    assert "non-standard domains: none" in out.stdout


def test_engine_sidecar_summary(tmp_path):
    engine = tmp_path / "model-fp16.engine"
    engine.write_bytes(b"\0" * 1024)
    sidecar = {"format": "tensorrt", "tensorrt": "10.0", "gpu": "Some GPU", "compute_capability": "9.0",
               "precision": "fp16", "profile": {"min_batch": 1, "max_batch": 64}, "source_onnx": "model.onnx",
               "build_time_s": 12.5}  # fmt: skip
    (tmp_path / "model-fp16.engine.json").write_text(json.dumps(sidecar))
    text = inspection.format_summary(inspection.summarise(engine))
    assert "TensorRT engine" in text and "precision: fp16" in text and "gpu: Some GPU" in text


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.onnx", "missing.onnx: no such file"),
        (lambda d: _write(d / "notes.onnx", b"these are not the weights you are looking for"), "is not an ONNX model"),
        (lambda d: _write(d / "empty.onnx", b""), "is not an ONNX model (it holds no graph)"),
        (lambda d: _write(d / "x.engine", b"\0"), "has no readable sidecar x.engine.json"),
    ],
)
def test_bad_files_are_one_clear_error(tmp_path, run_main, make, message):
    out = run_main("inspect", str(make(tmp_path)))
    assert out.returncode == 1 and message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_port_in_use_is_one_clear_error(onnx_file, run_main):
    with socket.socket() as busy:
        busy.bind((inspection.HOST, 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = run_main("inspect", str(onnx_file), "--port", str(port))
    assert out.returncode == 1 and f"--port {port}: 127.0.0.1:{port} is not free" in out.stderr


def test_serves_the_model_with_netron(onnx_file):
    proc = subprocess.Popen(
        [sys.executable, "-m", "speedlab", "inspect", str(onnx_file)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # background shells start us ignoring it
    )  # fmt: skip
    try:
        url = _served_url(proc)
        page = urllib.request.urlopen(url, timeout=10).read().decode()
        assert "netron" in page.lower() and "/data/model.onnx" in page
        model_bytes = urllib.request.urlopen(f"{url}data/model.onnx", timeout=10).read()
        assert model_bytes == onnx_file.read_bytes()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    assert proc.returncode == 0


def _served_url(proc: subprocess.Popen) -> str:
    for line in proc.stdout:
        if line.startswith("netron: serving"):
            return line.split(" at ", 1)[1].split()[0]
    raise AssertionError(f"inspect exited without serving: {proc.stderr.read()}")


def test_browser_opens_only_when_asked(onnx_file, monkeypatch):
    import netron

    calls = []
    monkeypatch.setattr(netron, "serve", lambda *a, **k: calls.append(k) or (inspection.HOST, 1))
    monkeypatch.setattr(netron, "wait", lambda: None)
    assert inspection.main([str(onnx_file)]) == 0
    assert inspection.main([str(onnx_file), "--browser"]) == 0
    assert [c["browse"] for c in calls] == [False, True]
