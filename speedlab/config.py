"""Typed configuration: one job schema per command, built from shared parts.

Every Hydra-driven command (train, bench, export, profile, parity, data prepare) composes its own primary config
(`conf/<command>.yaml`) against its own job schema (`TrainJob`, `BenchJob`, ...), so `--cfg job` and `--help` show
only the sections that command reads. Each section is a dataclass whose `__post_init__` refuses an out-of-range
value, naming the key, the value and the valid range: a bad value fails at composition, before any work. Keys that
were renamed are refused with their new name (`RENAMED`).

This module knows no plug-in and no command: model families and data sources register their schemas into it
(`register_schema`), and the Hydra runner (`speedlab.cli`) composes. Commands receive plain dataclasses and a plain
dict of the resolved config for result.json.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

import activations
from speedlab.errors import SpeedlabError

# The configs ship inside the package (`speedlab/conf`, in a checkout a link to the top-level `conf/`), so an installed
# speedlab composes them from any directory.
CONF_DIR = Path(__file__).resolve().parent / "conf"


class ConfigError(SpeedlabError, ValueError):
    """A value outside its valid range, found when the composed config becomes dataclasses."""


class Choice(str, enum.Enum):
    """A config choice: OmegaConf validates against it (naming the valid values in its error); it compares equal
    to, prints as and serialises as its plain string value."""

    def __str__(self) -> str:
        return str(self.value)


def _choices(name: str, values: Sequence[str]) -> type[Choice]:
    return Choice(name, {v: v for v in values})  # type: ignore[return-value]


# Built from the registry, so a newly registered activation is a valid choice without touching this file.
ActivationName = _choices("ActivationName", activations.names())
InitName = _choices("InitName", ["torch_default", "kaiming", "trunc_normal"])
Feed = _choices("Feed", ["device", "loader"])
CompileMode = _choices("CompileMode", ["default", "reduce-overhead", "max-autotune"])
AmpDtype = _choices("AmpDtype", ["bf16", "fp16"])
Schedule = _choices("Schedule", ["cosine", "constant"])
TrackingBackend = _choices("TrackingBackend", ["none", "mlflow"])
OnnxExporter = _choices("OnnxExporter", ["dynamo", "torchscript"])
TrtPrecision = _choices("TrtPrecision", ["fp32", "fp16", "bf16", "int8"])
CalibrationMethod = _choices("CalibrationMethod", ["minmax", "entropy", "percentile"])

# Precisions a bench cell can ask for (each backend says which of them it runs).
BENCH_PRECISIONS = ("fp32", "bf16", "fp16", "int8")
# Opsets each ONNX exporter can write: dynamo's torchlib starts at 18; the TorchScript exporter stops at 20, and the
# custom-op translations use CastLike (opset 15).
OPSETS = {"dynamo": range(18, 24), "torchscript": range(15, 21)}


def require(ok: bool, key: str, value: Any, rule: str) -> None:
    """Refuse `key=value` unless `ok`, saying what `rule` allows."""
    if not ok:
        raise ConfigError(f"{key}={value}: {rule}")


def at_least(key: str, value: float | None, low: float, *, optional: bool = False) -> None:
    """`value` must be >= `low` (or None when `optional`)."""
    if value is None and optional:
        return
    rule = f"must be at least {low:g}" + (" (or null)" if optional else "")
    require(value is not None and value >= low, key, value, rule)


# ---------------------------------------------------------------------------------------------------- plug-in bases
@dataclass
class ModelCfg:
    """What every model family's schema has: its registered name. A family (`speedlab/models/<name>.py`) subclasses
    this with its own keys and registers it; `conf/model/<name>.yaml` selects it (`model=<name>`)."""

    name: str = MISSING  # set by the choice `model=NAME`, never by hand


@dataclass
class DataCfg:
    """What every data source's schema has. A source (`speedlab/data/sources/<name>.py`) subclasses this (or
    `ImageDataCfg`) with its own keys and registers it; `conf/data/<name>.yaml` selects it (`data=<name>`)."""

    name: str = MISSING  # set by the choice `data=NAME`, never by hand
    # A number of samples per split for generated sources; a cap (None = all) for the others.
    train_size: int | None = None
    val_size: int | None = None  # as train_size, for the val split
    # How batches reach the model. device: whole tensors (or uint8 image arrays) on the device, each batch sliced and
    # transformed there; loader: a torch DataLoader collating on the host (image files decoded per image in workers).
    feed: Feed = Feed.device

    def __post_init__(self) -> None:
        at_least("data.train_size", self.train_size, 1, optional=True)
        at_least("data.val_size", self.val_size, 1, optional=True)


@dataclass
class ImageDataCfg(DataCfg):
    """Keys of every source of images: the size the model sees and the training augmentation."""

    resolution: int = 224  # size the model sees (reference: 64 px upsampled to 224)
    augment: bool = True  # random-resized-crop (+ horizontal flip) on the training split
    crop_scale: list[float] = field(default_factory=lambda: [0.08, 1.0])  # area range of the random crops
    flip: bool = True  # horizontal flips when augmenting (off for digits: a mirrored 2 is no 2)

    def __post_init__(self) -> None:
        super().__post_init__()
        at_least("data.resolution", self.resolution, 1)
        scale = list(self.crop_scale)
        valid = len(scale) == 2 and all(map(math.isfinite, scale)) and 0 < scale[0] <= scale[1] <= 1
        require(valid, "data.crop_scale", scale, "give [low, high] with 0 < low <= high <= 1 (fractions of the area)")


@dataclass
class ImagePipelineCfg(ImageDataCfg):
    """Keys of the sources whose uint8 images (arrays or files) are fed on the device or by a DataLoader."""

    image_size: int = 64  # size images are decoded and cached at
    workers: int = 2  # data.feed=loader only: DataLoader worker processes
    pin_memory: bool = True  # data.feed=loader only
    prefetch_factor: int = 2  # data.feed=loader only

    def __post_init__(self) -> None:
        super().__post_init__()
        at_least("data.image_size", self.image_size, 1)
        at_least("data.workers", self.workers, 0)
        at_least("data.prefetch_factor", self.prefetch_factor, 1)


# ------------------------------------------------------------------------------------------------- training parts
@dataclass
class TrainerCfg:
    """How a training run steps: epochs, batch, the step variant and the process-wide levers."""

    epochs: int = 10  # passes over the training split
    batch_size: int = 128  # samples per optimiser step (per process under torchrun)
    max_steps: int | None = None  # cap on optimiser steps per epoch (quick runs, smoke tests)
    channels_last: bool = False  # model and inputs in NHWC memory order (image inputs only)
    cudnn_benchmark: bool = False  # let cuDNN time its algorithms per shape (CUDA only)
    tf32: bool = False  # TF32 matmuls and convolutions (CUDA only)
    # Evaluate, log, checkpoint and rewrite result.json every N epochs (and after the last): a run of thousands of
    # one-step epochs then spends its time training, not bookkeeping.
    eval_every: int = 1
    # Steps run (and undone) before the first epoch so compilation and first-call costs are timed on their own.
    timing_warmup: int = 3
    save_checkpoints: bool = True  # write checkpoint.pt (atomically) at every evaluated epoch
    threads: int | None = None  # torch.set_num_threads for the run; None: torch's default (one per core)
    # The step variant (speedlab/train/steps/): module (nn.Module forward, autograd, torch.optim), compiled_optimizer
    # (the module step with its optimizer step compiled), functional (the whole step as one function on flat
    # buffers, compiled whole with compile.enabled), graphed (the functional step replayed as a CUDA graph), fused
    # (an MLP's whole step as one native kernel compiled for its shape: forward, loss, backward and AdamW).
    step: str = "module"
    # Keep freed host memory in the process (glibc mallopt), so a step's MB-sized temporaries reuse warm pages
    # instead of mapping, faulting in and zeroing fresh ones every step. Process-wide, and stays on once set.
    reuse_memory: bool = False
    # torch.backends.mkldnn.enabled: oneDNN runs the CPU convolutions (and more); false falls back to ATen's own
    # kernels. A lever measured even when it loses: for LeNet5's tiny convolutions it tells what oneDNN's buys.
    onednn: bool = True

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size", "eval_every", "timing_warmup"):
            at_least(f"trainer.{key}", getattr(self, key), 1)
        at_least("trainer.max_steps", self.max_steps, 1, optional=True)
        at_least("trainer.threads", self.threads, 1, optional=True)


@dataclass
class OptimCfg:
    """AdamW: learning rate, its schedule (per step, over the whole run) and the implementation."""

    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 0.05  # AdamW weight decay (none on norms, biases, layer scales)
    fused: bool | None = None  # None: torch's default for the device
    foreach: bool | None = None  # torch's multi-tensor AdamW; None: torch's default
    schedule: Schedule = Schedule.cosine  # cosine decay or constant, per step over the whole run
    lr_warmup_steps: int = 0  # linear warm-up from 0 before the schedule

    def __post_init__(self) -> None:
        require(self.lr > 0 and math.isfinite(self.lr), "optim.lr", self.lr, "must be a positive number")
        at_least("optim.weight_decay", self.weight_decay, 0)
        at_least("optim.lr_warmup_steps", self.lr_warmup_steps, 0)
        if self.fused and self.foreach:
            raise ConfigError("optim.fused=true and optim.foreach=true exclude each other; set one of them")


@dataclass
class CompileCfg:
    """torch.compile of the model (and, with trainer.step=functional, of the whole step)."""

    enabled: bool = False  # torch.compile the model
    mode: CompileMode = CompileMode.default  # default | reduce-overhead (CUDA graphs on a GPU) | max-autotune
    fullgraph: bool = False  # fail on a graph break instead of splitting the graph
    dynamic: bool | None = None  # dynamic shapes; None: torch's default (after a recompile)


@dataclass
class AmpCfg:
    """Automatic mixed precision of the forward pass (fp16 adds a GradScaler)."""

    enabled: bool = False  # autocast the forward pass
    dtype: AmpDtype = AmpDtype.bf16  # bf16 (no loss scaling), or fp16 (GradScaler; CUDA only)


@dataclass
class LossCfg:
    """What training minimises: the task's own loss (cross-entropy or MSE), or the user's, by import path, for a
    model whose outputs are not logits or a regression tensor (a dict or tuple of outputs)."""

    # loss(outputs, targets) -> scalar tensor: PKG.MODULE.ATTR of a function, or of an nn.Module class built with
    # loss.kwargs. None: the task's own.
    target: str | None = None
    kwargs: Any = field(default_factory=lambda: OmegaConf.create({}, flags={"struct": False}))  # open to new keys
    # Which output the task's figures (accuracy, MSE) read when the model returns several: a dict key or a tuple
    # index. None: with the user's loss, validation reports its loss only (unless the output is one tensor).
    output: str | None = None


# ----------------------------------------------------------------------------------------------------- bench parts
@dataclass
class BenchCfg:
    """The latency sweep: backends x precisions x batch sizes, and how each cell is timed."""

    # Checked against the backend registry when composed, so a new backend needs no edit here. Besides names:
    # `installed` (every backend that can run here: no rows of a runtime this machine lacks) and `all`.
    backends: list[str] = field(default_factory=lambda: ["installed"])
    batch_sizes: list[int] = field(default_factory=lambda: [1, 64])  # one cell per size
    precisions: list[str] = field(default_factory=lambda: ["fp32"])  # fp32 | bf16 | fp16 | int8
    # Inference levers, applied in this order by the backends that run the PyTorch model (eager, inductor):
    # channels_last | inference_mode | half_weights (speedlab/bench/levers/); each row records those it applied.
    levers: list[str] = field(default_factory=list)
    repeats: int = 1  # each cell prepared and timed afresh this many times: median and 95 % interval
    # Requests in flight at once, one cell per count (benchmark_app's -nireq, trtexec's --infStreams): N threads each
    # sending the batch again as soon as its answer is back; throughput from all answers over the wall time, latency
    # percentiles over every request. On the CPU, for backends that serve requests concurrently (eager,
    # onnxruntime, openvino); 1: one request at a time, the latency cells.
    concurrency: list[int] = field(default_factory=lambda: [1])
    export_dir: str | None = None  # an export run whose ONNX files / engines to run; None: export asks for them
    host_to_device: bool = False  # also time copying each cell's batch from pinned host memory to the GPU
    # Each backend's cells in a fresh process of their own (the run's own settings, `bench.backends=[that one]`):
    # no backend inherits another's threads, caches or allocator, and one that crashes cannot take the sweep down.
    isolate: bool = False
    # Joules per inference from the machine's counters (NVML on a GPU, RAPL on the CPU) over a 0.5 s window per
    # cell, where they are readable; otherwise every cell says why not. Never an estimate.
    energy: bool = True
    warmup_iters: int = 5  # warm-up: at least this many calls and this long
    warmup_min_s: float = 0.2  # seconds of warm-up at least
    min_iters: int = 20  # timed: at least this many calls and this long
    min_time_s: float = 1.0  # seconds of timed calls at least
    # With source=FILE: one sample's shape (after the batch axis), for files whose dimensions are symbolic.
    input_shape: list[int] | None = None
    # A cell (prepare and timing, per repeat) still running after this many seconds is stopped and recorded as
    # `timeout`, and the sweep goes on; None: no limit.
    cell_timeout_s: float | None = None
    # Each backend with settings of its own adds a section here (bench.onnxruntime, bench.inductor, ...): its options
    # dataclass lives beside it in speedlab/bench/backends/ and joins when the plug-ins load (`with_backend_options`).

    def __post_init__(self) -> None:
        require(bool(self.batch_sizes) and min(self.batch_sizes) >= 1, "bench.batch_sizes", self.batch_sizes,
                "give one or more sizes >= 1")  # fmt: skip
        bad = [p for p in self.precisions if p not in BENCH_PRECISIONS]
        require(not bad, "bench.precisions", self.precisions, f"valid precisions: {', '.join(BENCH_PRECISIONS)}")
        require(bool(self.backends), "bench.backends", self.backends, "give one or more backends")
        require(bool(self.concurrency) and min(self.concurrency) >= 1, "bench.concurrency", self.concurrency,
                "give one or more request counts >= 1 (1: one request at a time)")  # fmt: skip
        for key in ("repeats", "min_iters"):
            at_least(f"bench.{key}", getattr(self, key), 1)
        for key in ("warmup_iters", "warmup_min_s", "min_time_s"):
            at_least(f"bench.{key}", getattr(self, key), 0)
        if self.cell_timeout_s is not None:
            require(self.cell_timeout_s > 0, "bench.cell_timeout_s", self.cell_timeout_s,
                    "give seconds above 0, or null for no limit")  # fmt: skip


# ---------------------------------------------------------------------------------------------------- export parts
@dataclass
class ArtifactLimits:
    """Limits an exported artifact must meet against the eager fp32 model on the fixed batch; None: not checked."""

    max_abs_error: float | None = None  # largest |difference| of any output
    max_rel_error: float | None = 1e-4  # max |difference| over the largest |reference logit|
    min_cosine: float = 0.99999  # lowest per-sample cosine of the outputs
    min_top1_agreement: float = 0.99  # samples whose top-1 class matches eager (classification)

    def __post_init__(self) -> None:
        for key in ("min_cosine", "min_top1_agreement"):
            value = getattr(self, key)
            require(0.0 <= value <= 1.0, f"export.limits.*.{key}", value, "must lie in [0, 1]")


@dataclass
class ExportLimits:
    """Parity limits per kind of artifact."""

    fp32: ArtifactLimits = field(default_factory=ArtifactLimits)
    half: ArtifactLimits = field(  # fp16 and bf16 engines
        default_factory=lambda: ArtifactLimits(max_rel_error=0.05, min_cosine=0.999, min_top1_agreement=0.95)
    )
    int8: ArtifactLimits = field(
        default_factory=lambda: ArtifactLimits(max_rel_error=None, min_cosine=0.99, min_top1_agreement=0.90)
    )


@dataclass
class ExportCfg:
    """Which artifacts to build, how, and the limits each must meet against the eager model."""

    # Checked against the format registry when composed. ONNX fp32 is built too when INT8 or TensorRT is asked for.
    formats: list[str] = field(default_factory=lambda: ["onnx", "int8", "tensorrt"])
    onnx_exporter: OnnxExporter = OnnxExporter.dynamo  # torch's exporter: dynamo (opsets 18-23) or torchscript (15-20)
    opset: int = 18  # ONNX opset
    dynamic_batch: bool = True  # a dynamic batch axis (else fixed at the parity batch size)
    external_data: bool | None = None  # None: only when the weights pass 1 GiB (protobuf caps a file at 2 GiB)
    parity_batch_size: int = 256  # the fixed batch: the first images of the val split (top-1 agreement needs many)
    limits: ExportLimits = field(default_factory=ExportLimits)
    # INT8: ONNX Runtime static quantisation (QDQ), calibrated on training images without augmentation
    calibration_batches: int = 8
    calibration_batch_size: int = 32  # images per calibration batch
    calibration_method: CalibrationMethod = CalibrationMethod.minmax  # minmax | entropy | percentile
    per_channel: bool = True  # weights quantised per output channel
    int8_head: bool = False  # quantise the classifier head too (costs top-1 agreement; see export/formats/int8.py)
    # TensorRT: one engine per precision, with one optimisation profile over this batch range [min, max]
    tensorrt_precisions: list[TrtPrecision] = field(default_factory=lambda: [TrtPrecision.fp32, TrtPrecision.fp16])
    tensorrt_batch_range: list[int] = field(default_factory=lambda: [1, 64])  # the engines' [min, max] batch
    workspace_gib: float = 4.0  # TensorRT's builder workspace

    def __post_init__(self) -> None:
        valid = OPSETS[str(self.onnx_exporter)]
        require(self.opset in valid, "export.opset", self.opset,
                f"the {self.onnx_exporter} exporter writes opsets {valid[0]}-{valid[-1]}")  # fmt: skip
        for key in ("parity_batch_size", "calibration_batches", "calibration_batch_size"):
            at_least(f"export.{key}", getattr(self, key), 1)
        low_high = self.tensorrt_batch_range
        require(len(low_high) == 2 and 1 <= low_high[0] <= low_high[1], "export.tensorrt_batch_range", low_high,
                "give [min, max] with 1 <= min <= max")  # fmt: skip
        require(self.workspace_gib > 0, "export.workspace_gib", self.workspace_gib, "must be above 0")


# ----------------------------------------------------------------------------------------------- the other commands
@dataclass
class ProfileCfg:
    """The profile command's tables."""

    steps: int = 5  # profiled training steps and inference forwards
    warmup: int = 3  # untimed steps first (compilation, first calls)
    top: int = 15  # ops shown per table (result.json keeps them all)

    def __post_init__(self) -> None:
        at_least("profile.steps", self.steps, 1)
        at_least("profile.top", self.top, 1)
        at_least("profile.warmup", self.warmup, 0)


@dataclass
class ParityCfg:
    """`python -m speedlab parity`: two training variants (A and B) stepped side by side on identical batches."""

    steps: int | None = None  # optimiser steps compared; None: trainer.epochs x the steps of an epoch
    copy_weights: bool = True  # B starts from A's initial weights (their state dicts must match)
    align_rng: bool = True  # B's stochastic layers (dropout, drop path) draw what A's draw, step by step
    # Largest relative loss difference still "equivalent", |a - b| / max(|a|, |b|, 1e-3); None: by the two sides'
    # compute dtypes (speedlab/parity/verdict.py: fp32 1e-4, fp16 1e-2, bf16 3e-2).
    tolerance: float | None = None
    evaluate: bool = True  # both sides' validation figures after the last step

    def __post_init__(self) -> None:
        at_least("parity.steps", self.steps, 1, optional=True)
        if self.tolerance is not None:
            require(self.tolerance > 0, "parity.tolerance", self.tolerance, "must be above 0 (or null)")


@dataclass
class MonitorCfg:
    """The resource monitor every run carries: a background thread sampling CPU, memory and (NVML) GPU use."""

    enabled: bool = True  # sample CPU, memory and GPU use in a background thread (resources.csv)
    interval_s: float = 0.5  # seconds between samples

    def __post_init__(self) -> None:
        require(self.interval_s > 0, "monitor.interval_s", self.interval_s, "must be above 0 seconds")


@dataclass
class TrackingCfg:
    """Experiment tracking, chosen by the `tracking` group (`tracking=mlflow`: the optional extra in
    requirements-tracking.txt)."""

    backend: TrackingBackend = TrackingBackend.none  # none, or mlflow (set by the `tracking` group)
    # MLflow's tracking URI; None: a SQLite database at artifacts/mlflow/mlflow.db
    uri: str | None = None
    experiment: str | None = None  # None: the command and experiment name (a sweep: one experiment for all jobs)
    log_checkpoints: bool = False  # upload checkpoint.pt as an artifact (can be large)


# ------------------------------------------------------------------------------------------------------------- jobs
@dataclass
class JobCfg:
    """What every command's job has: its name, its data, and how the run is recorded."""

    name: str = "default"  # the experiment's name; exp configs set it, run directories carry it
    data: DataCfg = MISSING  # a source's schema, chosen by the `data` group
    monitor: MonitorCfg = field(default_factory=MonitorCfg)
    tracking: TrackingCfg = field(default_factory=TrackingCfg)


@dataclass
class ModelJobCfg(JobCfg):
    """A job that builds a model: its family, seed and device."""

    seed: int = 0  # initialisation, data order and every random draw
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    model: ModelCfg = MISSING  # a family's schema, chosen by the `model` group


@dataclass
class TrainingJobCfg(ModelJobCfg):
    """A job that runs train's step: the trainer, the optimizer and the model-side levers."""

    trainer: TrainerCfg = field(default_factory=TrainerCfg)
    optim: OptimCfg = field(default_factory=OptimCfg)
    compile: CompileCfg = field(default_factory=CompileCfg)
    amp: AmpCfg = field(default_factory=AmpCfg)
    loss: LossCfg = field(default_factory=LossCfg)


@dataclass
class TrainJob(TrainingJobCfg):
    """train a model with the chosen speed levers and record what each one bought"""

    resume: str | None = None  # a checkpoint.pt, or a train run directory holding one, to continue from


@dataclass
class ProfileJob(TrainingJobCfg):
    """per-op time tables of each phase of train's step and of an inference, and a Chrome trace"""

    profile: ProfileCfg = field(default_factory=ProfileCfg)


@dataclass
class ParityJob(TrainingJobCfg):
    """train two variants side by side on identical batches: identical, equivalent or diverged?"""

    parity: ParityCfg = field(default_factory=ParityCfg)


@dataclass
class ExportJob(ModelJobCfg):
    """build ONNX / INT8 / TensorRT artifacts of a model and check each one's parity with it"""

    # The trained model (checkpoint.pt or its train run directory), whose family, model config and data declaration
    # replace this run's; None: a fresh model of this run's config.
    weights: str | None = None
    export: ExportCfg = field(default_factory=ExportCfg)


@dataclass
class BenchJob(ModelJobCfg):
    """inference latency sweep over backends x batch sizes x precisions (export settings: the artifacts it asks
    export for)"""

    weights: str | None = None  # as export's: a trained model to bench; None: a fresh one
    # A model file to bench as it is, with no PyTorch model: an .onnx file (onnxruntime, openvino), or a TensorRT
    # engine where TensorRT is installed. Its input's shape and dtype come from the file.
    source: str | None = None

    def __post_init__(self) -> None:
        if self.weights and self.source:
            raise ConfigError(f"weights={self.weights} and source={self.source}: give one (a trained run, or a model "
                              "file)")  # fmt: skip

    bench: BenchCfg = field(default_factory=BenchCfg)
    export: ExportCfg = field(default_factory=ExportCfg)


@dataclass
class DataPrepareJob(JobCfg):
    """build a data source's decoded cache ahead of training"""


def with_backend_options(options: dict[str, type]) -> None:
    """Give `bench` one section per backend that brings an options dataclass (`bench.<backend>.*`), and store the
    bench job with them: run once the backends are registered, before any composition."""
    sections = [(name, schema, field(default_factory=schema)) for name, schema in sorted(options.items())]
    bench = make_dataclass("BenchCfg", sections, bases=(BenchCfg,))
    bench.__doc__ = BenchCfg.__doc__
    job = make_dataclass("BenchJob", [("bench", bench, field(default_factory=bench))], bases=(BenchJob,))
    job.__doc__ = BenchJob.__doc__
    JOBS["bench"] = job
    ConfigStore.instance().store(name="bench_schema", node=job)


JOBS: dict[str, type[JobCfg]] = {
    "train": TrainJob,
    "bench": BenchJob,
    "export": ExportJob,
    "profile": ProfileJob,
    "parity": ParityJob,
    "data_prepare": DataPrepareJob,
}
for _command, _job in JOBS.items():
    ConfigStore.instance().store(name=f"{_command}_schema", node=_job)

# Keys that were renamed: an old spelling is refused with its new one (on the command line and in YAML files).
RENAMED = {
    "checkpoint": "weights (the trained model to load)",
    "trainer.checkpoint": "trainer.save_checkpoints",
    "trainer.cuda_graphs": "trainer.step=graphed",
    "compile.optimizer": "trainer.step=compiled_optimizer",
    "export.parity": "export.limits",
    "data.pipeline": "data.feed (device, or loader for the DataLoader pipeline once called classic)",
    "data.resident": "data.feed (device for resident=true, loader for resident=false)",
}
# Keys set by a group choice, never by hand.
CHOSEN_BY_GROUP = {"model.name": "model=NAME", "data.name": "data=NAME"}

# `${speedlab_pid:}` in conf/base.yaml: run directories started in the same second stay apart. Cached like Hydra's
# `now`, so that a launcher running jobs in other processes (joblib) gets the launching process's value with the
# config's cache, and a sweep's jobs share its one directory.
OmegaConf.register_new_resolver("speedlab_pid", os.getpid, replace=True, use_cache=True)

PLUGIN_GROUPS = ("model", "data")


def register_schema(group: str, name: str, schema: type) -> None:
    """Store a plug-in's schema where its `conf/<group>/<name>.yaml` composes it (`/schema/<group>/<name>@_here_`),
    so that file's values, and every override of them, are checked against the plug-in's own keys and types."""
    if group not in PLUGIN_GROUPS:
        raise ValueError(f"group {group!r}: plug-in schemas go in {', '.join(PLUGIN_GROUPS)}")
    ConfigStore.instance().store(group=f"schema/{group}", name=name, node=schema)
    if not (CONF_DIR / group / f"{name}.yaml").is_file():  # a plug-in from another package: `model=NAME` still works
        ConfigStore.instance().store(group=group, name=name, node=schema)


def structured(schema: type[Any], values: dict[str, Any], what: str) -> Any:
    """`values` (plain data, e.g. a checkpoint's model config) checked against `schema` and returned as an instance;
    a key or type the schema does not know raises SpeedlabError naming it and `what` the values came from."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), values))
    except (OmegaConfBaseException, ConfigError) as err:
        raise SpeedlabError(f"{what} does not fit {schema.__name__}: {explain(err)}") from None


def typed(cfg: DictConfig) -> Any:
    """Convert a composed config to its job dataclasses (the edge: nothing past here sees OmegaConf). Each section's
    `__post_init__` checks its ranges here, so a bad value fails before any work."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_object(cfg)
    except ConfigError:
        raise
    except OmegaConfBaseException as err:
        cause = err.__cause__ or err.__context__
        if isinstance(cause, ConfigError):
            raise ConfigError(str(cause)) from None
        raise


def resolved_dict(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # type: ignore[return-value]


def plain(node: Any) -> dict[str, Any]:
    """A typed config (any schema dataclass) as plain data, as result.json and checkpoints hold it."""
    return resolved_dict(OmegaConf.structured(node))


def explain(err: BaseException) -> str:
    """Hydra's message plus its direct cause's (which names the key and, for choices, the valid values), without
    OmegaConf's message templates and Hydra's search-path listing; a renamed key gets its new name."""
    text = str(err).strip()
    cause = err.__cause__
    if cause is not None and str(cause).strip() not in text:
        text += "\n" + str(cause).strip()
    text = text.split("Config search path:")[0]
    # Hydra suggests "+key=value" to append an unknown key: for a misspelt key that is the wrong advice.
    noise = ("$VALUE", "To append to your config", "reference_type=", "object_type=")
    text = "\n".join(line for line in text.splitlines() if not any(n in line for n in noise)).strip()
    for line in text.splitlines():
        key = line.strip().removeprefix("full_key:").strip()
        if line.strip().startswith("full_key:") and renamed_hint(key):
            text += "\n" + renamed_hint(key)
    return text


def renamed_hint(key: str) -> str | None:
    """What to write instead of an old or hand-set key, or None when `key` is neither."""
    for old, new in RENAMED.items():
        if key == old.split(" ")[0] or key.startswith(old.split(" ")[0] + "."):
            return f"{old.split(' ')[0]} was renamed: use {new}"
    if key in CHOSEN_BY_GROUP:
        return f"{key} is set by the choice {CHOSEN_BY_GROUP[key]}, not by hand"
    return None


@dataclass(frozen=True)
class RunContext:
    """What a command gets: the typed job config, the resolved config as plain data, and its run directory."""

    cfg: Any  # the command's job dataclass (TrainJob, BenchJob, ...)
    resolved: dict[str, Any]
    run_dir: Path
    multirun: bool = False  # one job of a sweep: a job this machine cannot run is recorded as skipped
    overrides: tuple[str, ...] = ()  # what the user set on the command line (Hydra's task overrides)
    sweep: str | None = None  # a multirun's sweep directory name (one MLflow experiment per sweep); None: single run

    def overridden(self, group: str) -> bool:
        """Whether the command line sets `group` itself or any key under it (`model=mlp`, `model.widths=[8]`)."""
        return any(o.lstrip("+~").split("=", 1)[0].split(".", 1)[0].split("@", 1)[0] == group for o in self.overrides)


# ---------------------------------------------------------------------------------------------- key descriptions
def field_comments(cls: type) -> dict[str, str]:
    """Each field's description, read from the schemas' own source: the comment on the field's line, else the
    comment lines just above it (inherited fields from their own class)."""
    import inspect
    import io
    import tokenize

    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass.__module__ == "types":
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        above: list[str] = []
        carried = ""  # a comment block above consecutive fields describes each of them
        for line in source.splitlines():
            stripped = line.strip()
            if stripped.startswith("#"):
                above.append(stripped.lstrip("# ").strip())
                continue
            if not stripped:
                carried = ""
            name = stripped.split(":", 1)[0].strip()
            if ":" in stripped and name.isidentifier() and not stripped.startswith(("def ", "class ", "return")):
                trailing = []
                try:  # a field spread over several lines ends the line inside brackets: keep what came before
                    for token in tokenize.generate_tokens(io.StringIO(stripped).readline):
                        if token.type == tokenize.COMMENT:
                            trailing.append(token.string.lstrip("# ").strip())
                except tokenize.TokenError:
                    pass
                carried = " ".join(above) or carried
                text = trailing[0] if trailing and not trailing[0].startswith("fmt:") else carried
                if text:
                    comments[name] = text
            above = []
    return comments


def describe_keys(node: Any, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted key, value, description) for every leaf of a typed config (a job or any section), sections first
    listed as (key, None, their docstring's first line)."""
    rows: list[tuple[str, Any, str]] = []
    notes = field_comments(type(node))
    for f in dataclasses.fields(node):
        value, key = getattr(node, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            doc = (type(value).__doc__ or "").strip().splitlines()
            rows.append((key, None, notes.get(f.name) or (doc[0] if doc else "")))
            rows += describe_keys(value, f"{key}.")
        else:
            rows.append((key, str(value) if isinstance(value, enum.Enum) else value, notes.get(f.name, "")))
    return rows
