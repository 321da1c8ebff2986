"""result.json: always written, atomically, with status, config and environment."""

from __future__ import annotations

import json

import pytest

from speedlab import record
from speedlab.errors import SpeedlabError
from speedlab.fsutil import atomic_write_json

ENV_KEYS = {"python", "torch", "cuda", "cudnn", "triton", "onnxruntime", "tensorrt", "gpu", "cpu", "git", "flags"}


def _read(run_dir):
    return json.loads((run_dir / "result.json").read_text())


def test_ok_run_records_kind_status_config_env(tmp_path):
    with record.recording(tmp_path, "train", {"seed": 1}) as rec:
        rec["answer"] = 42
    data = _read(tmp_path)
    assert data["kind"] == "train" and data["status"] == "ok" and data["answer"] == 42
    assert data["config"] == {"seed": 1}
    assert set(data["env"]) >= ENV_KEYS
    assert data["env"]["cpu"]["logical_cores"] >= 1
    assert {"num_threads", "cudnn_benchmark", "cuda_matmul_allow_tf32"} <= set(data["env"]["flags"])
    assert "commit" in data["env"]["git"]


def test_interrupted_run_says_so(tmp_path):
    with pytest.raises(KeyboardInterrupt), record.recording(tmp_path, "train", {}) as rec:
        rec["epochs"] = [1]
        raise KeyboardInterrupt
    data = _read(tmp_path)
    assert data["status"] == "interrupted" and data["epochs"] == [1]


def test_failed_run_keeps_the_reason(tmp_path):
    with pytest.raises(SpeedlabError), record.recording(tmp_path, "bench", {}):
        raise SpeedlabError("backend 'foo' is unknown")
    data = _read(tmp_path)
    assert data["status"] == "failed" and data["reason"] == "backend 'foo' is unknown"


def test_skipped_status_with_reason(tmp_path):
    with record.recording(tmp_path, "export", {}) as rec:
        rec.set_status("skipped", "tensorrt is not installed")
    data = _read(tmp_path)
    assert (data["status"], data["reason"]) == ("skipped", "tensorrt is not installed")


def test_atomic_write_leaves_old_file_when_serialising_fails(tmp_path):
    path = tmp_path / "result.json"
    atomic_write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"a": object.__new__(type("Unserialisable", (), {"__str__": None}))})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temporaries left behind
