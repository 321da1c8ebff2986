"""`python -m speedlab export [overrides] [weights=PATH]`: deployable artifacts of a model, each checked against it.

Takes the model `weights=` holds (its family, config and data shape come from the checkpoint), else a freshly
initialised one of the run's family for the run's data (enough for latency work), and builds each format of
`export.formats` through the format registry (`formats/`: ONNX fp32, then INT8 QDQ calibrated on training samples
and TensorRT engines from it), each after the artifact it is built from. Every artifact gets the one shared parity
check (`parity.check`) with the eager fp32 model on a fixed val batch of the run's data, whose shape must match the
model's. Everything lands in the
run directory: the artifacts, and result.json (`kind: export`) with one entry per artifact (format, path, status,
export time, size and the parity figures); a table of the same is printed at the end.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speedlab import checkpoint, config, models, record, tables
from speedlab.config import ExportCfg, ExportJob, RunContext
from speedlab.data.build import build_data, describe
from speedlab.data.loaders import DataBundle
from speedlab.data.spec import DataSpec
from speedlab.errors import SpeedlabError
from speedlab.export import formats, parity
from speedlab.export.formats import BuildRequest

DYNAMIC_BATCH_CHECK = 1  # besides the fixed batch, parity also runs at this batch size when the batch axis is dynamic


@dataclass
class Artifact:
    """One exported file and what was found about it; `record()` is its entry in result.json."""

    format: str  # onnx | tensorrt | pt2 | pt2_cuda (the format's file_format)
    precision: str  # fp32 | fp16 | bf16 | int8
    path: Path | None = None
    status: str = "ok"  # ok | failed (parity) | skipped (cannot be built here) | error (the export raised)
    reason: str | None = None
    export_time_s: float | None = None
    figures: dict[str, float] = field(default_factory=dict)  # worst over every check
    checks: list[dict[str, Any]] = field(default_factory=list)  # one per runtime and batch size
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.format} {self.precision}"

    def size_bytes(self) -> int | None:
        if self.path is None or not self.path.is_file():
            return None
        companions = self.path.parent.glob(f"{self.path.name}.data")  # ONNX external data
        return self.path.stat().st_size + sum(p.stat().st_size for p in companions)

    def record(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "precision": self.precision,
            "path": str(self.path) if self.path else None,
            "status": self.status,
            "reason": self.reason,
            "export_time_s": None if self.export_time_s is None else round(self.export_time_s, 3),
            "size_bytes": self.size_bytes(),
            **{name: self.figures.get(name) for name in parity.FIGURES},
            "checks": self.checks,
            **self.extra,
        }


@dataclass
class _Plan:
    """Everything checked before any long work."""

    formats: list[str]
    notes: list[str]
    spec: DataSpec  # what the run's data declares: the fixed batch's shape
    trained: checkpoint.Trained | None = None


def _prepare(ctx: RunContext) -> _Plan:
    cfg, ecfg = ctx.cfg, ctx.cfg.export
    requested = list(dict.fromkeys(str(f) for f in ecfg.formats))
    notes = []
    roots = [name for name in _sources(requested, ecfg) if name not in requested]
    if roots:
        notes.append(f"{', '.join(roots)} is exported anyway: the other formats are built from it")
    order = sorted([*roots, *requested], key=lambda name: _depth(name, ecfg))  # each format after its sources
    plan = _Plan(formats=order, notes=notes, spec=describe(cfg.data))
    if cfg.weights:
        plan.trained = checkpoint.load_trained(cfg.weights, "weights", ctx.resolved["model"], ctx.overridden("model"))
        notes += plan.trained.notes
        _check_data(plan.trained, plan.spec, cfg)
    else:
        models.check(cfg.model, plan.spec)
        notes.append(
            f"no checkpoint given: exporting the freshly initialised model (seed {cfg.seed}); enough for latency "
            "work, and parity holds for it, but it predicts nothing"
        )
    return plan


def _check_data(trained: checkpoint.Trained, spec: DataSpec, cfg: ExportJob) -> None:
    """The run's data feeds the parity checks: its shape and outputs must be those the model was trained on."""
    diffs = checkpoint.differences(trained.state, trained.state["model_config"], spec)
    if diffs:
        raise SpeedlabError(
            f"checkpoint {trained.path} was trained on other data than data={cfg.data.name} gives:\n  "
            + "\n  ".join(diffs)
            + "\n(give the training run's data settings, e.g. its data= and data.resolution=)"
        )


def run(ctx: RunContext) -> int:
    cfg = ctx.cfg
    with record.recording(ctx.run_dir, "export", ctx.resolved, sweep=ctx.sweep) as rec:
        plan = _prepare(ctx)
        for note in plan.notes:
            _say(f"note: {note}")
        data = _data(cfg)
        model = _model(cfg, plan, data.spec)
        fixed = next(data.val.epoch(0))[0].numpy()
        with torch.no_grad():
            reference = parity.host(model(torch.from_numpy(fixed)))
        rec.update(_describe(cfg, plan, model, fixed, data.spec))
        _say(f"{rec['params']:,} parameters; {data.spec.describe()}; parity on a fixed batch of {len(fixed)} val "
             "samples")  # fmt: skip
        # A trained model is also checked on the whole val split: its figure, and agreement with the eager model.
        val = None
        if plan.trained is not None:
            _say(f"eager fp32 on the val split ({data.val.plan.num_samples:,} samples) ...")
            val = _eager_val(model, data)
        rec["eager_val"] = _eager_figures(val, data.spec) if val else None
        rec["eager_val_acc"] = rec["eager_val"].get("val_acc") if val else None
        artifacts: list[Artifact] = []
        rec["artifacts"] = []
        for artifact in _export_all(ctx, plan, model, data, fixed, reference, val):
            artifacts.append(artifact)
            rec["artifacts"] = [a.record() for a in artifacts]
            rec.save()
        print("\n" + table(rec["artifacts"]))
        if rec["trained"]:
            print(f"\neager fp32: {_val_text(rec['eager_val'])}\n" + val_summary(rec["artifacts"]))
        print(f"\nartifacts and result.json in {ctx.run_dir}")
        bad = [a.label for a in artifacts if a.status in ("failed", "error")]
        if bad:
            rec.set_status("failed", f"artifacts that failed: {', '.join(bad)}")
            return 1
    return 0


def _say(line: str) -> None:
    print(line, flush=True)


def _data(cfg: ExportJob) -> DataBundle:
    """Val batches of the parity size (the first is the fixed batch) and unaugmented training batches for
    calibration: quantisation ranges come from inputs as the model sees them at inference."""
    ecfg = cfg.export
    # A static-batch model takes one size only: calibration batches then have the parity batch's size.
    calibration_size = ecfg.calibration_batch_size if ecfg.dynamic_batch else ecfg.parity_batch_size
    plain = dataclasses.replace(cfg.data, augment=False) if hasattr(cfg.data, "augment") else cfg.data
    data = build_data(plain, seed=cfg.seed, batch_size=calibration_size, eval_batch_size=ecfg.parity_batch_size)
    return data


def _model(cfg: ExportJob, plan: _Plan, spec: DataSpec) -> torch.nn.Module:
    if plan.trained is not None:
        return plan.trained.model.eval()
    torch.manual_seed(cfg.seed)
    return models.build(cfg.model, spec).eval()


def _describe(cfg: ExportJob, plan: _Plan, model: torch.nn.Module, fixed: np.ndarray, spec: DataSpec) -> dict:
    trained = plan.trained
    source = f"checkpoint {trained.path}" if trained else f"fresh initialisation (seed {cfg.seed})"
    return {
        "name": cfg.name,
        "model_source": source,
        "trained": trained is not None,
        "family": trained.cfg.name if trained else cfg.model.name,
        "model_config": config.plain(trained.cfg if trained else cfg.model),
        "params": models.count_params(model),
        "input_shape": [None, *fixed.shape[1:]],
        "data_spec": spec.record(),
        "fixed_batch": {"split": "val", "samples": len(fixed)},
        "onnx_exporter": str(cfg.export.onnx_exporter),
        "opset": cfg.export.opset,
        "providers": parity.onnxruntime_providers(),
        "notes": plan.notes,
    }


def _sources(names: list[str], ecfg: ExportCfg) -> list[str]:
    """Every format the artifacts of `names` are built from, directly or through another (INT8 and TensorRT: ONNX)."""
    found: list[str] = []
    for name in names:
        form = formats.get(name)
        direct = [src[0] for src in (form.source(p) for p in form.precisions(ecfg)) if src is not None]
        for source in direct:
            found += [f for f in [*_sources([source], ecfg), source] if f not in found]
    return found


def _depth(name: str, ecfg: ExportCfg) -> int:
    """How many builds a format's artifacts stand on (ONNX fp32: none; INT8: one; an INT8 engine: two)."""
    form = formats.get(name)
    sources = [form.source(p) for p in form.precisions(ecfg)]
    return max((1 + _depth(src[0], ecfg) for src in sources if src is not None), default=0)


def _export_all(ctx, plan, model, data, fixed, reference, val: list[_ValBatch] | None) -> Iterator[Artifact]:
    """Every requested format's artifacts, each after the artifact it is built from, through the format registry."""
    with torch.no_grad():  # a model with several outputs (a dict, a tuple) has no one top-1 to agree on
        single = isinstance(model(torch.from_numpy(fixed[:1])), torch.Tensor)
    classification = data.spec.task == "classification" and single
    built: dict[tuple[str, str], Artifact] = {}
    for name in plan.formats:
        form = formats.get(name)
        for precision in form.precisions(ctx.cfg.export):
            artifact = _export_one(ctx, name, precision, built, model, data, fixed, reference, classification)
            if val is not None and form.file_format == "onnx" and artifact.status in ("ok", "failed"):
                _attempt(artifact, lambda a=artifact: a.extra.update(_val_figures(a.path, val, data.spec)))
            built[(name, precision)] = artifact
            yield artifact


def _export_one(ctx, name: str, precision: str, built: dict, model, data, fixed, reference, classification: bool):
    """One artifact: built by its format (unless it cannot be built here, or its source failed), verified, and
    checked by the shared parity check on the fixed batch (and on one sample when the batch axis is dynamic)."""
    ecfg, form = ctx.cfg.export, formats.get(name)
    artifact = Artifact(form.file_format, precision)
    source = form.source(precision)
    parent = built.get(source) if source else None
    why = form.unavailable()
    if why is None and source and (parent is None or parent.status not in ("ok", "failed")):
        why = f"the {source[0]} {source[1]} artifact it is built from {'failed' if parent else 'was not exported'}"
        if parent is None:
            why += f" (add {source[0]} to export.formats)"
    if why:
        artifact.status, artifact.reason = "skipped", why
        _say(f"  {artifact.label}: skipped: {why}")
        return artifact
    request = BuildRequest(
        model=model, example=torch.from_numpy(fixed[:2] if ecfg.dynamic_batch else fixed), cfg=ecfg,
        directory=ctx.run_dir, precision=precision, source=parent.path if parent else None,
        calibration=lambda: (x.numpy() for _, (x, _) in zip(range(ecfg.calibration_batches), data.train.epoch(0),
                                                              strict=False)),
        batch_range=_batch_range(ecfg, fixed),
    )  # fmt: skip
    _say(f"building {artifact.label} ({name} format) ...")

    def build() -> None:
        artifact.path = form.build(request)

    if not _attempt(artifact, _timed(artifact, build)):
        return artifact
    artifact.extra.update(request.extra)
    problem = form.verify(artifact.path)
    if problem:
        artifact.status, artifact.reason = "failed", problem
        return artifact
    _attempt(artifact, lambda: _check(artifact, form, fixed, reference, ecfg, classification))
    return artifact


def _batch_range(ecfg: ExportCfg, fixed: np.ndarray) -> tuple[int, int]:
    """An engine's batch range, `export.tensorrt_batch_range`, widened to fit the parity batch; a static ONNX model
    has one size."""
    if not ecfg.dynamic_batch:
        return len(fixed), len(fixed)
    low, high = ecfg.tensorrt_batch_range
    return min(low, DYNAMIC_BATCH_CHECK), max(high, len(fixed))


def _attempt(artifact: Artifact, step: Callable[[], Any]) -> bool:
    """Run one step of an artifact (export, check); an exception marks it `error` and the other formats go on."""
    try:
        step()
    except Exception as err:  # noqa: BLE001 - one format's failure is recorded, not fatal
        artifact.status, artifact.reason = "error", f"{type(err).__name__}: {str(err).strip()[:2000]}"
        _say(f"  {artifact.label}: error: {artifact.reason.splitlines()[0]}")
        return False
    return True


def _timed(artifact: Artifact, export: Callable[[], Any]) -> Callable[[], None]:
    def step() -> None:
        start = time.perf_counter()
        export()
        artifact.export_time_s = time.perf_counter() - start

    return step


def _check(artifact: Artifact, form, fixed, reference, ecfg: ExportCfg, classification: bool) -> None:
    """The shared parity check through every runtime the format names, judged by the precision's limits."""
    batches = list(_parity_batches(fixed, reference, ecfg.dynamic_batch))
    artifact.checks = parity.check(form.runners(artifact.path), batches, classification)
    artifact.figures, broken = parity.judge(artifact.checks, parity.limits_for(artifact.precision, ecfg.limits))
    if broken:
        artifact.status, artifact.reason = "failed", broken
    f = artifact.figures
    agreement = f"top-1 agreement {f['top1_agreement']:.1%}" if f["top1_agreement"] is not None else "regression"
    _say(
        f"  {artifact.label}: {artifact.status} in {artifact.export_time_s:.1f} s, max abs error "
        f"{f['max_abs_error']:.2e}, cosine {f['cosine']:.6f}, {agreement}"
    )


def _parity_batches(fixed: np.ndarray, reference: np.ndarray, dynamic: bool):
    yield fixed, reference
    if dynamic and len(fixed) != DYNAMIC_BATCH_CHECK:
        yield fixed[:DYNAMIC_BATCH_CHECK], reference[:DYNAMIC_BATCH_CHECK]


@dataclass
class _ValBatch:
    inputs: np.ndarray
    targets: np.ndarray
    eager: np.ndarray  # the eager model's outputs


def _eager_val(model: torch.nn.Module, data: DataBundle) -> list[_ValBatch]:
    """The val split with the eager model's outputs, for each artifact's figure and agreement with eager."""
    with torch.no_grad():
        return [_ValBatch(x.numpy(), y.numpy(), parity.host(model(x))) for x, y in data.val.epoch(0)]


def _task_figure(outputs: np.ndarray, targets: np.ndarray, spec: DataSpec) -> dict[str, float]:
    """The task's headline figure over a split: top-1 accuracy (%) or mean squared error; none when the outputs are
    not the task's (several outputs that a custom loss reads)."""
    fits = outputs.ndim == targets.ndim + 1 if spec.task == "classification" else outputs.shape == targets.shape
    if not fits:
        return {}
    if spec.task == "classification":
        return {"val_acc": round(100.0 * float((outputs.argmax(axis=1) == targets).mean()), 3)}
    return {"val_mse": float(np.mean((outputs.astype(np.float64) - targets) ** 2))}


def _val_figures(path: Path, val: list[_ValBatch], spec: DataSpec) -> dict[str, float]:
    """An ONNX model's figure over the val split (ONNX Runtime, CPU) and, for classification, the fraction of
    samples whose top-1 matches the eager model's: a wider sample than the fixed batch. A static-batch model skips
    the last, shorter batch."""
    session = parity.onnxruntime_session(path, "CPUExecutionProvider")
    static = session.get_inputs()[0].shape[0]
    batches = [b for b in val if not isinstance(static, int) or len(b.inputs) == static]
    outputs = np.concatenate([parity.run_session(session, b.inputs) for b in batches])
    targets = np.concatenate([b.targets for b in batches])
    figures = {**_task_figure(outputs, targets, spec), "val_samples": len(outputs)}
    if spec.task == "classification" and outputs.ndim == 2:
        eager = np.concatenate([b.eager for b in batches]).argmax(axis=1)
        figures["val_top1_agreement"] = round(float((outputs.argmax(axis=1) == eager).mean()), 5)
    return figures


def _eager_figures(val: list[_ValBatch], spec: DataSpec) -> dict[str, float]:
    return _task_figure(np.concatenate([b.eager for b in val]), np.concatenate([b.targets for b in val]), spec)


def _val_text(figures: dict[str, float]) -> str:
    if "val_acc" in figures:
        return f"val top-1 {figures['val_acc']:.2f} %"
    if "val_mse" in figures:
        return f"val MSE {figures['val_mse']:.4g}"
    return "no task figure (the model's outputs are not the task's; its own loss reads them)"


TABLE_HEADER = ["Format", "Precision", "Status", "Export time", "Size", "Max abs error", "Max rel error", "Cosine",
                "Top-1 agree"]  # fmt: skip


def table(entries: list[dict[str, Any]]) -> str:
    """The artifacts as a markdown table (the command's closing summary)."""
    lines = []
    for e in entries:
        status = e["status"] if e["status"] == "ok" else f"{e['status']}: {(e['reason'] or '').splitlines()[0][:70]}"
        lines.append([
            e["format"], e["precision"], status,
            f"{e['export_time_s']:.1f} s" if e["export_time_s"] is not None else "–",
            f"{e['size_bytes'] / 2**20:.2f} MiB" if e["size_bytes"] else "–", _figure(e, "max_abs_error", ".2e"),
            _figure(e, "max_rel_error", ".2e"), _figure(e, "cosine", ".6f"), _figure(e, "top1_agreement", ".1%"),
        ])  # fmt: skip
    return tables.markdown(TABLE_HEADER, lines, right=[i >= 3 for i in range(len(TABLE_HEADER))])


def val_summary(entries: list[dict[str, Any]]) -> str:
    """One line per artifact checked on the whole val split (trained models only)."""
    lines = []
    for e in entries:
        if e.get("val_samples") is None:
            continue
        agreement = (f", top-1 agreement with eager {e['val_top1_agreement']:.1%}"
                     if e.get("val_top1_agreement") is not None else "")  # fmt: skip
        lines.append(f"{e['format']} {e['precision']}: {_val_text(e)} over {e['val_samples']:,} samples{agreement}")
    return "\n".join(lines)


def _figure(entry: dict[str, Any], name: str, fmt: str) -> str:
    return format(entry[name], fmt) if entry.get(name) is not None else "–"
