"""The Python API: `speedlab.bench(model, x)` runs the bench command's own code on a model object and returns its
result.json; `speedlab.train(...)` runs the command; docs/python-api.md's example runs as written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import speedlab
from speedlab.errors import SpeedlabError
from tests.conftest import invoke

REPO = Path(__file__).resolve().parent.parent
FAST = {"min_iters": 3, "min_time_s": 0.02, "warmup_iters": 1, "warmup_min_s": 0.0}


def test_bench_a_model_object_returns_the_rows_of_its_result(tmp_path):
    model = nn.Sequential(nn.Conv1d(2, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(8, 3))
    result = speedlab.bench(model, torch.randn(4, 2, 32), batch_sizes=[1, 8], **FAST)
    assert [(r["backend"], r["batch_size"], r["status"]) for r in result["rows"]] == [
        (b, n, "ok") for b in ("eager", "onnxruntime") for n in (1, 8)]  # fmt: skip
    assert all(r["p50_ms"] > 0 for r in result["rows"])
    on_disk = json.loads((Path(result["run_dir"]) / "result.json").read_text())
    assert on_disk["rows"] == result["rows"] and on_disk["family"] == "python"
    assert on_disk["schema_version"] == speedlab.SCHEMA_VERSION and on_disk["speedlab_version"] == speedlab.__version__
    assert on_disk["data_spec"]["input_shape"] == [2, 32]


def test_the_api_and_the_cli_record_the_same_fields(tmp_path):
    """One code path: a CLI bench of a model and the API's bench of one write result.json with the same keys."""
    from speedlab import cli, models
    from speedlab.data.build import describe

    overrides = ["model=mlp", "model.widths=[8]", "data=matrix_exp", "bench.backends=[eager]", "bench.batch_sizes=[2]",
                 *(f"bench.{k}={v}" for k, v in FAST.items())]  # fmt: skip
    assert invoke("bench", [*overrides, f"hydra.run.dir={tmp_path / 'cli'}"]) == 0
    by_cli = json.loads((tmp_path / "cli" / "result.json").read_text())
    job = cli.compose("bench", overrides)
    model = models.build(job.model, describe(job.data))
    by_api = speedlab.bench(model, torch.randn(2, 4), backends=["eager"], **FAST)
    assert set(by_api) - {"run_dir"} == set(by_cli)
    assert set(by_api["rows"][0]) == set(by_cli["rows"][0])


def test_bad_input_raises_the_clis_message():
    with pytest.raises(SpeedlabError, match="unknown nope"):
        speedlab.bench(nn.Linear(4, 2), torch.randn(2, 4), backends=["nope"])
    with pytest.raises(SpeedlabError, match="first dimension is the batch"):
        speedlab.bench(nn.Linear(4, 2), [1, 2, 3])


def test_train_runs_the_command_and_returns_its_result():
    result = speedlab.train("model=mlp", "model.widths=[8]", "data=matrix_exp", "data.train_size=64",
                            "data.val_size=16", "trainer.epochs=1", "trainer.batch_size=16")  # fmt: skip
    assert result["returncode"] == 0 and result["status"] == "ok" and result["final_val_mse"] > 0
    with pytest.raises(SpeedlabError, match="trainer.epochs"):
        speedlab.train("trainer.epochs=0")


def test_the_pages_example_runs_as_written(monkeypatch, capsys):
    page = (REPO / "docs" / "python-api.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    monkeypatch.chdir(REPO)
    exec(compile(code, "docs/python-api.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "onnxruntime 8 ok" in printed and "eager 1 ok" in printed
