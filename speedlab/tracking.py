"""Experiment tracking: each run logged to MLflow when the config says `tracking=mlflow` (an optional extra).

What a run logs, once it has ended (whatever its status): the resolved config, flattened, as parameters; each epoch's
figures as metrics at that epoch's step; the run-level figures (times, final accuracy, resource means) as metrics;
result.json, the resource timeline and its plot, the run's other plots and its .hydra/ config as artifacts;
checkpoint.pt only with `tracking.log_checkpoints=true`. Its status becomes MLflow's (ok: FINISHED, failed:
FAILED, interrupted: KILLED).

The default store is a SQLite database at artifacts/mlflow/mlflow.db with artifacts beside it; `tracking.uri`
points at another store or a server. A sweep is one MLflow experiment with a run per job. Logging happens after
result.json is safely written, and a store that cannot be reached is reported, not fatal: the run's own record stays
complete either way.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from speedlab.errors import SpeedlabError

EXTRA = "requirements-tracking.txt"
STATUS = {"ok": "FINISHED", "failed": "FAILED", "interrupted": "KILLED", "skipped": "FINISHED"}
MAX_PARAM_CHARS = 6000  # MLflow's limit on one parameter's value
BATCH = 900  # MLflow takes at most 1,000 metrics (and 100 params) per log_batch call
PLOT_SUFFIXES = (".png", ".csv")
RESOURCES_PLOT = "resources.png"


def store_dir(artifacts_root: Path) -> Path:
    """Where the default local store lives: the SQLite database and the artifacts."""
    return artifacts_root / "mlflow"


def default_uri(artifacts_root: Path) -> str:
    return f"sqlite:///{(store_dir(artifacts_root) / 'mlflow.db').resolve()}"


def require_mlflow() -> Any:
    """MLflow's module, or one clear error naming the extra that provides it."""
    try:
        import mlflow
    except ImportError:
        raise SpeedlabError(
            f"tracking=mlflow needs MLflow, which is not installed: pip install -r {EXTRA} (or set tracking=none)"
        ) from None
    return mlflow


def flatten(config: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Nested config -> ("trainer.batch_size", 128) pairs; lists stay whole values."""
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from flatten(value, f"{name}.")
        else:
            yield name, value


def _numbers(values: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The numeric leaves of a (nested) dict, as metric names and values; booleans and strings are left out."""
    out: dict[str, float] = {}
    for key, value in values.items():
        if isinstance(value, bool) or key.startswith("_"):
            continue
        if isinstance(value, int | float):
            out[f"{prefix}{key}"] = float(value)
        elif isinstance(value, dict):
            out.update(_numbers(value, f"{prefix}{key}."))
    return out


class MlflowTracker:
    """Logs one speedlab run as one MLflow run of the experiment its command (or sweep) names."""

    def __init__(self, settings: dict[str, Any], kind: str, run_dir: Path, sweep: str | None, root: Path) -> None:
        self.mlflow = require_mlflow()
        self.settings, self.kind, self.run_dir, self.sweep = settings, kind, Path(run_dir), sweep
        self.local = settings.get("uri") is None
        self.uri = settings.get("uri") or default_uri(root)
        self.root = root
        self.experiment = settings.get("experiment") or (f"{sweep}" if sweep else f"speedlab-{kind}")

    def log(self, data: dict[str, Any]) -> dict[str, Any]:
        """Log a finished run; returns what result.json records of it (experiment, run id, URI)."""
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.tracking import MlflowClient

        if self.local:
            store_dir(self.root).mkdir(parents=True, exist_ok=True)
        client = MlflowClient(tracking_uri=self.uri)
        experiment_id = self._experiment(client)
        run_name = self.run_dir.name
        tags = {"speedlab.kind": self.kind, "speedlab.status": str(data.get("status")),
                "speedlab.run_dir": str(self.run_dir.resolve()), "mlflow.runName": run_name}  # fmt: skip
        git = data.get("env", {}).get("git", {})
        if git.get("commit"):
            tags["mlflow.source.git.commit"] = git["commit"]
        run = client.create_run(experiment_id, run_name=run_name, tags=tags)
        run_id = run.info.run_id
        now = int(time.time() * 1000)
        params = [Param(k, str(v)[:MAX_PARAM_CHARS]) for k, v in flatten(data.get("config", {}))]
        for i in range(0, len(params), 100):
            client.log_batch(run_id, params=params[i : i + 100])
        metrics = [Metric(k, v, now, 0) for k, v in self._summary(data).items()]
        for epoch in data.get("epochs") or []:
            step = int(epoch.get("epoch", 0))
            metrics += [Metric(f"epoch.{k}", v, now, step) for k, v in _numbers(epoch).items() if k != "epoch"]
        for i in range(0, len(metrics), BATCH):
            client.log_batch(run_id, metrics=metrics[i : i + BATCH])
        client.log_batch(run_id, tags=[RunTag("speedlab.reason", str(data.get("reason") or ""))])
        self._plot_resources(data)
        for path in self._artifacts():
            if path.is_dir():
                client.log_artifacts(run_id, str(path), artifact_path=path.name)
            else:
                client.log_artifact(run_id, str(path))
        client.set_terminated(run_id, status=STATUS.get(str(data.get("status")), "FAILED"))
        return {"backend": "mlflow", "uri": self.uri, "experiment": self.experiment, "run_id": run_id}

    def _experiment(self, client: Any) -> str:
        found = client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        try:
            return client.create_experiment(self.experiment, artifact_location=self._artifact_location())
        except self.mlflow.exceptions.MlflowException:  # a parallel job of the same sweep created it first
            return client.get_experiment_by_name(self.experiment).experiment_id

    def _plot_resources(self, data: dict[str, Any]) -> None:
        """The run's resource timeline as a plot in its directory, so the tracked run shows it."""
        from speedlab.monitor import plot_timeline

        timeline = Path(data.get("resources", {}).get("timeline", ""))
        if timeline.is_file():
            plot_timeline(timeline, self.run_dir / RESOURCES_PLOT, f"{self.kind}: {data.get('changes') or ''}")

    def _artifact_location(self) -> str | None:
        """Artifacts beside a SQLite database (MLflow would put them in ./mlruns under the working directory); a
        server decides for itself."""
        if self.local:
            return (store_dir(self.root) / "artifacts").resolve().as_uri()
        if self.uri.startswith("sqlite:///"):
            return (Path(self.uri.removeprefix("sqlite:///")).parent / "mlflow-artifacts").resolve().as_uri()
        return None

    @staticmethod
    def _summary(data: dict[str, Any]) -> dict[str, float]:
        """Run-level figures: the numeric top-level entries, and the resource figures' means, p95s and peaks."""
        top = {k: v for k, v in data.items() if k not in ("config", "env", "epochs", "resources", "losses")}
        numbers = {k: v for k, v in _numbers(top).items() if "." not in k}
        numbers.update(_numbers(data.get("resources", {}).get("figures", {}), "resources."))
        return numbers

    def _artifacts(self) -> list[Path]:
        files = [p for p in sorted(self.run_dir.iterdir()) if p.suffix in PLOT_SUFFIXES and p.is_file()]
        files.insert(0, self.run_dir / "result.json")
        if (self.run_dir / ".hydra").is_dir():
            files.append(self.run_dir / ".hydra")
        checkpoint = self.run_dir / "checkpoint.pt"
        if self.settings.get("log_checkpoints") and checkpoint.is_file():
            files.append(checkpoint)
        return [p for p in files if p.exists()]


def tracker(settings: dict[str, Any] | None, kind: str, run_dir: Path, sweep: str | None, root: Path):
    """The run's tracker from the config's `tracking` section, or None; a missing extra fails here, first."""
    settings = settings or {}
    backend = str(settings.get("backend", "none"))
    if backend == "none":
        return None
    if backend != "mlflow":
        raise SpeedlabError(f"tracking.backend={backend!r}: valid values are none, mlflow")
    return MlflowTracker(settings, kind, run_dir, sweep, root)
