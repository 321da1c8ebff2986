"""Run records: each run's result.json (kind, status, config, environment, results), written atomically.

This is the only module that builds output paths inside a run directory. Every result.json describes itself: the
resolved config, library versions, the device, the git commit and the global speed flags in force.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import torch

import speedlab
from speedlab import status, tracking
from speedlab.errors import SpeedlabError
from speedlab.fsutil import DiskFullError, RecordLines, atomic_write_json, atomic_write_text
from speedlab.monitor import ResourceMonitor

RESULT_FILE = "result.json"
CHECKPOINT_FILE = "checkpoint.pt"
STATUSES = status.RUN
# A status no process writes: a result.json still saying "running" whose process is gone (killed, or the machine
# went down) reads as this. See `status_of`.
CRASHED = status.CRASHED
REPO_ROOT = Path(__file__).resolve().parent.parent


def result_path(run_dir: Path) -> Path:
    return Path(run_dir) / RESULT_FILE


def checkpoint_path(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_FILE


# The exported artifacts' file names, which export writes and bench (`bench.export_dir`) reads.
ONNX_FILES = {"fp32": "model.onnx", "int8": "model-int8.onnx"}
TRACE_FILE = "trace.json"
RESOURCES_FILE = "resources.csv"
SAMPLES_FILE = "samples.npz"
PARITY_PLOT_FILE = "parity.png"


def onnx_path(run_dir: Path, precision: str) -> Path:
    """The ONNX model of a precision (`ONNX_FILES`: fp32 or int8) in a run directory."""
    return Path(run_dir) / ONNX_FILES[precision]


def engine_path(run_dir: Path, precision: str) -> Path:
    """The TensorRT engine of a precision (fp32, fp16, bf16, int8) in a run directory."""
    return Path(run_dir) / f"model-{precision}.engine"


def trace_path(run_dir: Path) -> Path:
    """The profiler's Chrome trace of a profile run."""
    return Path(run_dir) / TRACE_FILE


def samples_path(run_dir: Path) -> Path:
    """The run's raw samples (per-call latencies, per-step times; `speedlab.samples`), beside result.json."""
    return Path(run_dir) / SAMPLES_FILE


def resources_path(run_dir: Path) -> Path:
    """The resource monitor's timeline, beside result.json."""
    return Path(run_dir) / RESOURCES_FILE


def parity_plot_path(run_dir: Path) -> Path:
    """A parity run's plot of both loss curves and their difference."""
    return Path(run_dir) / PARITY_PLOT_FILE


def sidecar_path(artifact: Path) -> Path:
    """The JSON that describes a binary artifact (a TensorRT engine's version, GPU, precision and profile)."""
    return artifact.with_name(artifact.name + ".json")


def tensorrt_timing_cache_path(gpu_name: str, tensorrt_version: str) -> Path:
    """TensorRT's timing cache, shared by every build on this GPU and TensorRT version (a cache made by another
    GPU or version would be rejected, so each gets its own file)."""
    slug = "".join(c if c.isalnum() else "-" for c in gpu_name.lower()).strip("-")
    return artifacts_root() / "cache" / "tensorrt" / f"timing-{slug}-trt{tensorrt_version}.cache"


def report_dir() -> Path:
    """Where `speedlab report` writes report.md and its plots."""
    return artifacts_root() / "report"


def artifacts_root() -> Path:
    """Where outputs go: $SPEEDLAB_ARTIFACTS or ./artifacts (conf/speedlab.yaml points Hydra at the same place)."""
    return Path(os.environ.get("SPEEDLAB_ARTIFACTS", "artifacts"))


def new_run_dir(name: str) -> Path:
    """A fresh run directory for entry points outside Hydra (benchmark scripts), named like Hydra's runs."""
    base = artifacts_root() / "runs" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{name}"
    base.parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):  # two runs of one process in the same second get their own directories
        run_dir = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
    raise FileExistsError(f"{base}: no free run directory name")


def job_dir(parent: Path, name: str) -> Path:
    """The run directory of one job that a benchmark script starts inside its own run directory."""
    return Path(parent) / name


def _dist_version(name: str) -> str | None:
    """Installed version without importing the package (importing tensorrt or triton is slow or may fail)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu_info() -> dict[str, Any] | None:
    if not torch.cuda.is_available():
        return None
    index = torch.cuda.current_device()
    info: dict[str, Any] = {
        "name": torch.cuda.get_device_name(index),
        "count": torch.cuda.device_count(),
        "capability": ".".join(map(str, torch.cuda.get_device_capability(index))),
        "memory_bytes": torch.cuda.get_device_properties(index).total_memory,
        "driver": None,
    }
    try:
        import pynvml  # from nvidia-ml-py

        pynvml.nvmlInit()
        info["driver"] = pynvml.nvmlSystemGetDriverVersion()
        pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - the driver version is a nicety; NVML may be absent in containers
        pass
    return info


def git_commit() -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    changed = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": bool(changed) if changed is not None else None}


def speed_flags() -> dict[str, Any]:
    """Process-wide switches that change speed (and sometimes numerics), as they are at the time of the call."""
    return {
        "num_threads": torch.get_num_threads(),
        "num_interop_threads": torch.get_num_interop_threads(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
    }


def environment() -> dict[str, Any]:
    """Versions, device and flags for result.json."""
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "speedlab": speedlab.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "cudnn": cudnn,
        "triton": _dist_version("triton"),
        "onnxruntime": _dist_version("onnxruntime") or _dist_version("onnxruntime-gpu"),
        "tensorrt": _dist_version("tensorrt"),
        "torchvision": _dist_version("torchvision"),
        "timm": _dist_version("timm"),
        "gpu": _gpu_info(),
        "cpu": {"model": _cpu_model(), "logical_cores": os.cpu_count(), "affinity": len(os.sched_getaffinity(0))},
        "git": git_commit(),
        "flags": speed_flags(),
        "argv": sys.argv,
    }


def status_of(result: dict[str, Any]) -> str:
    """A result.json's status as it stands now: "running" is only believed while its process is alive on this host
    (the same pid, started when the run did); otherwise the run crashed, since every way out of a live process
    (success, an error, Ctrl-C) writes its own status. A run on another host stays "running": it cannot be checked."""
    current = result.get("status", "unknown")
    process = result.get("process") or {}
    if current != status.RUNNING or process.get("host") != socket.gethostname() or "pid" not in process:
        return current
    try:
        alive = psutil.Process(process["pid"])
        # A reused pid belongs to a process started after the run's own.
        same = alive.create_time() <= process.get("started_unix", 0) + 1 and alive.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        same = False
    return current if same else CRASHED


class RunRecord:
    """The contents of one run's result.json; `save()` writes it atomically, as often as the run likes."""

    def __init__(
        self, run_dir: Path, kind: str, config: dict[str, Any], monitor: ResourceMonitor | None = None
    ) -> None:
        self.run_dir = Path(run_dir)
        self.monitor = monitor
        self.path = result_path(self.run_dir)
        self.data: dict[str, Any] = {
            "schema_version": speedlab.SCHEMA_VERSION,  # what readers (report, compare) check before trusting fields
            "speedlab_version": speedlab.__version__,
            "kind": kind,
            "status": "running",
            "reason": None,
            "config": config,
            "env": environment(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            # Who is writing: lets a later reader tell a run in progress from one whose process was killed.
            "process": {"pid": os.getpid(), "host": socket.gethostname(), "started_unix": round(time.time(), 3)},
        }
        self._t0 = time.perf_counter()
        self._lines: dict[str, RecordLines] = {}  # epochs encoded once each, however often the run saves

    def __setitem__(self, key: str, value: Any) -> None:
        self.data[key] = value

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def update(self, values: dict[str, Any]) -> None:
        self.data.update(values)

    def refresh_flags(self) -> None:
        """Record the speed flags as they are now: call it once the run has applied its own."""
        self.data["env"]["flags"] = speed_flags()

    def set_status(self, value: str, reason: str | None = None) -> None:
        if value not in STATUSES:
            raise ValueError(f"status {value!r} is not one of {STATUSES}")
        self.data["status"], self.data["reason"] = value, reason

    def save(self) -> Path:
        self.data["wall_time_s"] = round(time.perf_counter() - self._t0, 3)
        if self.monitor is not None:
            self.data["resources"] = {**self.monitor.summary(), "timeline": str(resources_path(self.run_dir))}
            atomic_write_text(resources_path(self.run_dir), self.monitor.timeline_csv())
        atomic_write_json(self.path, self.data, self._lines)
        return self.path


@contextmanager
def recording(run_dir: Path, kind: str, config: dict[str, Any], sweep: str | None = None) -> Iterator[RunRecord]:
    """Record a run: status `ok` unless the block sets another, `failed` on an error, `interrupted` on Ctrl-C.

    result.json is written whatever happens, so an interrupted or failed run says so instead of vanishing. The
    resource monitor samples the whole block as the config's `monitor` section says (on, every 0.5 s, where the
    config has none); every save writes its summary and timeline. With the config's `tracking` section set, the
    ended run is logged there too (`sweep`: the sweep a job belongs to, which names its MLflow experiment).
    """
    track = tracking.tracker(config.get("tracking"), kind, Path(run_dir), sweep, artifacts_root())
    record = RunRecord(run_dir, kind, config, monitor=_monitor(config.get("monitor")))
    record.save()
    try:
        yield record
    except KeyboardInterrupt:
        record.set_status("interrupted", "interrupted by the user (Ctrl-C / SIGINT)")
        _save_ending(record)
        print(f"\ninterrupted: partial results in {record.path}", file=sys.stderr)
        raise
    except SpeedlabError as err:
        record.set_status("failed", str(err))
        _save_ending(record)
        raise
    except BaseException as err:
        record.set_status("failed", f"{type(err).__name__}: {err}")
        _save_ending(record)
        raise
    else:
        if record["status"] == "running":
            record.set_status("ok")
        record.save()
    finally:
        if record.monitor is not None:
            record.monitor.stop()
        if track is not None:
            _track(track, record)


def _save_ending(record: RunRecord) -> None:
    """Write a failed or interrupted run's status; where even that cannot be written (the disk that failed the run
    is still full), say so and let the run's own error be the one reported: the result.json on disk keeps every
    epoch saved before, and a reader sees the run as crashed once this process is gone."""
    try:
        record.save()
    except DiskFullError as err:
        print(f"speedlab: could not record the run's end in {record.path}: {err}", file=sys.stderr)


def _track(track: Any, record: RunRecord) -> None:
    """Log the ended run; a store that fails is reported and recorded, and the run's own record stays whole."""
    try:
        record["tracking"] = track.log(record.data)
        print(f"tracking: logged to MLflow experiment {record['tracking']['experiment']!r} "
              f"(run {record['tracking']['run_id']}) at {record['tracking']['uri']}")  # fmt: skip
    except Exception as err:  # noqa: BLE001 - any store failure: say so, keep the run
        record["tracking"] = {"backend": "mlflow", "error": f"{type(err).__name__}: {err}"}
        print(f"tracking: could not log this run to MLflow ({type(err).__name__}: {err}); "
              f"result.json has everything: {record.path}", file=sys.stderr)  # fmt: skip
    record.save()


def _monitor(settings: dict[str, Any] | None) -> ResourceMonitor | None:
    settings = settings or {}
    if not settings.get("enabled", True):
        return None
    # The interval's range is checked at composition (MonitorCfg); here it is plain data from the resolved config.
    return ResourceMonitor(float(settings.get("interval_s", 0.5))).start()
