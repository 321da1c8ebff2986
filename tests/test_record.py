"""result.json: always written, atomically, with status, config and environment."""

from __future__ import annotations

import json
import os

import pytest

from speedlab import fsutil, record, results, samples, status
from speedlab.errors import SpeedlabError
from speedlab.fsutil import atomic_write_json

ENV_KEYS = {"python", "torch", "cuda", "cudnn", "triton", "onnxruntime", "tensorrt", "gpu", "cpu", "git", "flags"}


def _read(run_dir):
    return json.loads((run_dir / "result.json").read_text())


def test_ok_run_records_kind_status_config_env(tmp_path):
    with record.recording(tmp_path, "example", {"seed": 1}) as rec:
        rec["answer"] = 42
    data = _read(tmp_path)
    assert data["kind"] == "example" and data["status"] == "ok" and data["answer"] == 42
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


def test_atomic_writes_keep_the_mode_a_plain_write_would_have(tmp_path):
    """A teammate reads result.json, the checkpoint and the cache's labels like every other file of a run: the
    temporary file's 0600 does not stick."""
    old = os.umask(0o027)
    try:
        atomic_write_json(tmp_path / "result.json", {"a": 1})
        (tmp_path / "plain.txt").write_text("x")
        samples.write(tmp_path, {"x": [1.0]})
    finally:
        os.umask(old)
    mode = lambda name: (tmp_path / name).stat().st_mode & 0o777  # noqa: E731
    assert mode("result.json") == mode("plain.txt") == mode("samples.npz") == 0o640
    assert fsutil.umask() == old


@pytest.mark.broken_results  # an old and a future result.json, on purpose
def test_results_of_schema_1_are_read_in_schema_2_terms_and_newer_ones_refused(tmp_path):
    old = {"schema_version": 1, "speedlab": "0.1.0", "kind": "bench", "status": "ok",
           "rows": [{"backend": "tensorrt", "status": "unsupported"}]}  # fmt: skip
    (tmp_path / "result.json").write_text(json.dumps(old))
    read = results.load(tmp_path)
    assert read["speedlab_version"] == "0.1.0" and read["rows"][0]["status"] == status.SKIPPED
    (tmp_path / "result.json").write_text(json.dumps({**old, "schema_version": 99}))
    with pytest.raises(SpeedlabError, match="schema 99 is newer than this speedlab reads"):
        results.load(tmp_path)


def test_every_status_written_is_in_the_one_vocabulary():
    assert set(status.RUN) | set(status.CELL) | set(status.ARTIFACT) <= set(status.ALL)
    assert set(record.STATUSES) == set(status.RUN)
