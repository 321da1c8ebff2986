"""`speedlab inspect`: the summary of an ONNX file or engine sidecar, serving with netron, and its clear errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest
import torch

from speedlab import cli, models
from speedlab.data.build import describe
from speedlab.export import inspection
from speedlab.export.formats import onnx as onnx_export
from tests.conftest import REPO


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = cli.compose("export", ["+preset=quick", "export.onnx_exporter=torchscript"])
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


def test_summary_of_a_trained_and_exported_model(exported_tiny, run_main):
    (onnx,) = [a for a in json.loads((exported_tiny / "result.json").read_text())["artifacts"]
               if a["precision"] == "fp32"]  # fmt: skip
    out = run_main("inspect", onnx["path"], "--summary-only")
    assert out.returncode == 0, out.stderr
    assert (
        "input  input: float ['batch', 3, 32, 32]" in out.stdout and "output output: float ['batch', 10]" in out.stdout
    )


def test_engine_sidecar_summary(tmp_path):
    engine = tmp_path / "model-fp16.engine"
    engine.write_bytes(b"\0" * 1024)
    sidecar = {"format": "tensorrt", "tensorrt": "10.0", "gpu": "Some GPU", "compute_capability": "9.0",
               "precision": "fp16", "profile": {"min_batch": 1, "max_batch": 64}, "source_onnx": "model.onnx",
               "build_time_s": 12.5}  # fmt: skip
    (tmp_path / "model-fp16.engine.json").write_text(json.dumps(sidecar))
    text = inspection.format_summary(inspection.summarise(engine))
    assert "TensorRT engine" in text and "precision: fp16" in text and "gpu: Some GPU" in text


def _package(directory: Path, meta: dict, member: str = "m/data/aotinductor/model/x.wrapper_metadata.json") -> Path:
    """A stand-in for an AOTInductor package: the archive layout and metadata `inspect` reads, no compiled code."""
    path = directory / "model.pt2"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, json.dumps({"AOTI_DEVICE_KEY": "cpu", "AOTI_CPU_ISA": "AVX512", **meta}))
        archive.writestr("m/data/aotinductor/model/x.wrapper.so", b"\0" * 2048)
        archive.writestr("m/data/aotinductor/model/x.kernel.cpp", "// kernels")
    return path


def test_package_summary_names_device_isa_and_whether_this_torch_can_load_it(tmp_path, run_main):
    mine = _package(tmp_path, {"speedlab_torch": torch.__version__, "speedlab_batch_range": "1-64"})
    out = run_main("inspect", str(mine))  # no --summary-only: a package has no graph for netron, so it stops here
    assert out.returncode == 0, out.stderr
    assert "AOTInductor package" in out.stdout and "compiled for cpu (AVX512)" in out.stdout
    assert f"loadable by this torch: yes (torch {torch.__version__})" in out.stdout and "batch 1-64" in out.stdout
    assert "x.wrapper.so: 0.00 MiB" in out.stdout and "netron" not in out.stderr
    old = _package(tmp_path, {"speedlab_torch": "2.0.0"})
    assert "loadable by this torch: no: " in inspection.format_summary(inspection.summarise(old))
    from speedlab.errors import SpeedlabError
    from speedlab.export.formats import aotinductor

    with pytest.raises(SpeedlabError, match=r"compiled by torch 2\.0\.0; this is torch .* export it again"):
        aotinductor.load(old)  # refused before any of its code is loaded


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.onnx", "missing.onnx: no such file"),
        (lambda d: d, "not a file (give an .onnx file, a TensorRT engine or a .pt2 package)"),
        (lambda d: _write(d / "model.pt2", b"not a zip"), "model.pt2: not an AOTInductor package (BadZipFile"),
        (lambda d: _package(d, {}, member="m/data/other.json"), "a zip archive without an AOTInductor model"),
        (lambda d: _write(d / "checkpoint.pt", b"PK\x03\x04 a zip, not a protobuf"), "is not an ONNX model"),
        (lambda d: _write(d / "notes.onnx", b"these are not the weights you are looking for"), "is not an ONNX model"),
        (lambda d: _write(d / "empty.onnx", b""), "is not an ONNX model (it holds no graph)"),
        (lambda d: _write(d / "x.engine", b"\0"), "has no readable sidecar x.engine.json"),
    ],
)
@pytest.mark.drill("7. inspect")
def test_bad_files_are_one_clear_error(tmp_path, run_main, make, message, drill):
    path = make(tmp_path)
    out = run_main("inspect", str(path))
    assert out.returncode == 1 and message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    drill(
        injected=f"`inspect {'a directory' if path.is_dir() else path.name}`",
        did=f"refused before netron starts: `...{message}`",
        lost="nothing",
    )


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


@pytest.mark.drill("7. inspect")
def test_serves_the_model_with_netron(onnx_file, drill):
    proc = subprocess.Popen(
        [sys.executable, "-m", "speedlab", "inspect", str(onnx_file)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # background shells start us ignoring it
    )  # fmt: skip
    try:
        url = _served_url(proc)
        others = _assert_served_on_loopback_only(proc.pid, int(url.rstrip("/").rsplit(":", 1)[1]))
        page = urllib.request.urlopen(url, timeout=10).read().decode()
        assert "netron" in page.lower() and "/data/model.onnx" in page
        model_bytes = urllib.request.urlopen(f"{url}data/model.onnx", timeout=10).read()
        assert model_bytes == onnx_file.read_bytes()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    assert proc.returncode == 0
    drill(injected="`inspect model.onnx`: where does netron listen?",
          did=f"listening on 127.0.0.1 only; refused on the machine's {len(others)} other address(es); "
              "page and model bytes served on loopback", lost="nothing")  # fmt: skip


def _assert_served_on_loopback_only(pid: int, port: int) -> list[str]:
    """The server's listening socket is bound to 127.0.0.1 (not 0.0.0.0), and the machine's other addresses refuse
    the port: nothing on the network can reach a model being inspected."""
    import psutil

    listening = [c.laddr for c in psutil.Process(pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert listening and all(addr.ip == inspection.HOST for addr in listening), listening
    assert port in {addr.port for addr in listening}
    others = [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
              if a.family == socket.AF_INET and not a.address.startswith("127.")]  # fmt: skip
    for address in others:
        with socket.socket() as probe, pytest.raises(OSError):
            probe.settimeout(2)
            probe.connect((address, port))
    return others


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


CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
# Where the browser test keeps its screenshot (a test artifact, never committed: artifacts/ is ignored).
SCREENSHOT = REPO / "artifacts" / "tests" / "inspect-netron.png"


@pytest.mark.slow  # starts a real browser: ~10 s
@pytest.mark.drill("7. inspect")
def test_a_person_sees_the_graph_in_a_real_browser(onnx_file, drill):
    """What a person sees: headless Chromium opens the page `inspect` serves, accepts netron's consent prompt and
    shows the model's graph with its Conv nodes; the screenshot is kept at SCREENSHOT."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in requirements.txt")
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        why = "needs Debian's chromium and chromium-driver: `make browser` installs them"
        if os.environ.get("SPEEDLAB_REQUIRE_BROWSER"):  # make test-slow and make fault-drill installed them first
            pytest.fail(why)
        pytest.skip(why)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    proc = subprocess.Popen(
        [sys.executable, "-m", "speedlab", "inspect", str(onnx_file)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # This machine's network is closed: without the background-networking flags Chromium keeps retrying Google.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,900"):  # fmt: skip
        options.add_argument(flag)
    driver = None
    try:
        url = _served_url(proc)
        driver = webdriver.Chrome(service=webdriver.ChromeService(str(CHROMEDRIVER)), options=options)
        driver.get(url)
        wait = WebDriverWait(driver, 60)
        consent = wait.until(lambda d: next((b for b in d.find_elements(By.ID, "message-button") if b.is_displayed()),
                                            None))  # fmt: skip
        assert "cookies" in driver.find_element(By.ID, "message").text
        consent.click()
        nodes = wait.until(lambda d: [n.text for n in d.find_elements(By.CSS_SELECTOR, "#canvas g.node")
                                      if n.text.startswith("Conv")])  # fmt: skip
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(SCREENSHOT))
        assert nodes and SCREENSHOT.stat().st_size > 10_000, nodes
        drill(injected="headless Chromium opens the served page",
              did=f"accepted netron's cookie prompt; the graph shows {len(nodes)} Conv node(s); screenshot kept at "
                  f"{SCREENSHOT.relative_to(REPO)}", lost="nothing")  # fmt: skip
    finally:
        if driver is not None:
            driver.quit()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
