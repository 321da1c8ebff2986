"""tracking=mlflow: a run, a sweep and a failing store, read back through MLflow's own client from a temporary SQLite
store; a missing extra gives one clear error naming it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from speedlab import record
from tests.conftest import TINY_DATA

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # SQLAlchemy's, from inside MLflow's store

mlflow = pytest.importorskip("mlflow", reason="the tracking extra (requirements-tracking.txt) is not installed")
from mlflow.tracking import MlflowClient  # noqa: E402

MLP = [*TINY_DATA, "model=mlp", "model.widths=[8]", "trainer.batch_size=32", "trainer.epochs=2",
       "trainer.save_checkpoints=false"]  # fmt: skip


def test_a_train_run_is_read_back_from_the_default_sqlite_store(run_main, tmp_path):
    run_dir = tmp_path / "run"
    outcome = run_main("train", *MLP, "tracking=mlflow", f"hydra.run.dir={run_dir}")
    assert outcome.returncode == 0, outcome.stderr
    result = json.loads(record.result_path(run_dir).read_text())
    info = result["tracking"]
    db = tmp_path / "artifacts" / "mlflow" / "mlflow.db"  # run_main points SPEEDLAB_ARTIFACTS at tmp_path/artifacts
    assert info["uri"] == f"sqlite:///{db.resolve()}" and db.is_file()
    client = MlflowClient(tracking_uri=info["uri"])
    run = client.get_run(info["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["speedlab.kind"] == "train"
    assert run.data.params["trainer.batch_size"] == "32" and run.data.params["model.name"] == "mlp"
    assert run.data.metrics["final_val_acc"] == pytest.approx(result["final_val_acc"])
    assert "resources.process_cpu_pct.mean" in run.data.metrics
    losses = client.get_metric_history(info["run_id"], "epoch.train_loss")
    assert [m.step for m in sorted(losses, key=lambda m: m.step)] == [1, 2]
    assert [m.value for m in sorted(losses, key=lambda m: m.step)] == [e["train_loss"] for e in result["epochs"]]
    artifacts = {a.path for a in client.list_artifacts(info["run_id"])}
    assert {"result.json", "resources.csv", "resources.png", ".hydra"} <= artifacts
    assert run.info.artifact_uri.startswith((tmp_path / "artifacts" / "mlflow" / "artifacts").resolve().as_uri())
    assert client.get_experiment(run.info.experiment_id).name == "speedlab-train"


def test_a_sweep_is_one_experiment_with_a_run_per_job(run_main, tmp_path):
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    outcome = run_main("train", *MLP, "tracking=mlflow", f"tracking.uri={uri}", "trainer.epochs=1,2",
                       f"hydra.sweep.dir={tmp_path / 'sweep-x'}", "-m")  # fmt: skip
    assert outcome.returncode == 0, outcome.stderr
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("sweep-x")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2 and {r.data.params["trainer.epochs"] for r in runs} == {"1", "2"}
    assert experiment.artifact_location == (tmp_path / "mlflow-artifacts").resolve().as_uri()  # not ./mlruns


def test_a_store_that_fails_keeps_the_run_and_says_so(run_main, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the database's folder should be")
    run_dir = tmp_path / "run"
    outcome = run_main("train", *MLP, "tracking=mlflow", f"tracking.uri=sqlite:///{blocker}/x.db",
                       f"hydra.run.dir={run_dir}")  # fmt: skip
    assert outcome.returncode == 0
    assert "could not log this run to MLflow" in outcome.stderr
    result = json.loads(record.result_path(run_dir).read_text())
    assert result["status"] == "ok" and "error" in result["tracking"] and len(result["epochs"]) == 2


def test_without_mlflow_tracking_fails_once_naming_the_extra(run_main, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow now raises ImportError
    outcome = run_main("train", *MLP, "tracking=mlflow", f"hydra.run.dir={tmp_path / 'run'}")
    assert outcome.returncode != 0
    assert "pip install -r requirements-tracking.txt" in outcome.stderr
    assert outcome.stderr.count("error") == 1 and "Traceback" not in outcome.stderr
    assert not Path(tmp_path / "run" / "result.json").exists()  # refused before the run started
