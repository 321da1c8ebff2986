"""Typed configuration for every speedlab command.

Dataclass schemas registered in Hydra's ConfigStore give each key a type, so a misspelt key, a wrong type or an
unknown choice fails at composition with the key's name. Values live in `conf/` (YAML). This is the only module that
touches Hydra or OmegaConf objects: commands receive plain dataclasses (`SpeedlabCfg` and its parts) and a plain dict
of the resolved config for result.json.
"""

from __future__ import annotations

import enum
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import MISSING, DictConfig, OmegaConf

import activations
from speedlab.errors import SpeedlabError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


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
Pipeline = _choices("Pipeline", ["device", "classic"])
CompileMode = _choices("CompileMode", ["default", "reduce-overhead", "max-autotune"])
AmpDtype = _choices("AmpDtype", ["bf16", "fp16"])
Schedule = _choices("Schedule", ["cosine", "constant"])
StepKind = _choices("StepKind", ["module", "functional"])
TrackingBackend = _choices("TrackingBackend", ["none", "mlflow"])
OrtGraphOptimization = _choices("OrtGraphOptimization", ["disable", "basic", "extended", "all"])
OpenvinoHint = _choices("OpenvinoHint", ["LATENCY", "THROUGHPUT"])
ExportFormat = _choices("ExportFormat", ["onnx", "int8", "tensorrt"])
OnnxExporter = _choices("OnnxExporter", ["dynamo", "torchscript"])
TrtPrecision = _choices("TrtPrecision", ["fp32", "fp16", "bf16", "int8"])
CalibrationMethod = _choices("CalibrationMethod", ["minmax", "entropy", "percentile"])


@dataclass
class ModelCfg:
    """What every model family's schema has: its registered name. A family (`speedlab/models/<name>.py`) subclasses
    this with its own keys and registers it; `conf/model/<name>.yaml` selects it (`model=<name>`)."""

    name: str = MISSING


@dataclass
class DataCfg:
    """What every data source's schema has. A source (`speedlab/data/sources/<name>.py`) subclasses this (or
    `ImageDataCfg`) with its own keys and registers it; `conf/data/<name>.yaml` selects it (`data=<name>`)."""

    name: str = MISSING
    # A number of samples per split for generated sources; a cap (None = all) for the others.
    train_size: int | None = None
    val_size: int | None = None


@dataclass
class ImageDataCfg(DataCfg):
    """Keys of every source of images: the size the model sees and the training augmentation."""

    resolution: int = 224  # size the model sees (reference: 64 px upsampled to 224)
    augment: bool = True  # random-resized-crop (+ horizontal flip) on the training split
    crop_scale: list[float] = field(default_factory=lambda: [0.08, 1.0])  # area range of the random crops
    flip: bool = True  # horizontal flips when augmenting (off for digits: a mirrored 2 is no 2)


@dataclass
class ImagePipelineCfg(ImageDataCfg):
    """Keys of the sources whose uint8 images go through the device or classic pipeline (arrays or files)."""

    image_size: int = 64  # size images are decoded and cached at
    pipeline: Pipeline = Pipeline.device
    # classic pipeline only
    workers: int = 2
    pin_memory: bool = True
    prefetch_factor: int = 2


@dataclass
class TrainerCfg:
    epochs: int = 10
    batch_size: int = 128
    max_steps: int | None = None  # cap on optimiser steps per epoch (quick runs, smoke tests)
    channels_last: bool = False
    cudnn_benchmark: bool = False
    tf32: bool = False
    # Evaluate, log, checkpoint and rewrite result.json every N epochs (and after the last): a run of thousands of
    # one-step epochs then spends its time training, not bookkeeping.
    eval_every: int = 1
    # Steps run (and undone) before the first epoch so compilation and first-call costs are timed on their own.
    timing_warmup: int = 3
    checkpoint: bool = True  # write checkpoint.pt (atomically) after every epoch
    # Overhead levers (small networks, where framework overhead and not FLOPs decides the step time):
    threads: int | None = None  # torch.set_num_threads for the run; None: torch's default (one per core)
    # module: nn.Module forward, autograd backward, torch.optim step. functional: the whole step as one function
    # (torch.func gradients, AdamW written out on flat buffers), compiled whole with fullgraph when compile.enabled.
    step: StepKind = StepKind.module
    cuda_graphs: bool = False  # replay the whole functional step as one captured CUDA graph (GPU only)
    # Keep freed host memory in the process (glibc mallopt), so a step's MB-sized temporaries reuse warm pages
    # instead of mapping, faulting in and zeroing fresh ones every step. Process-wide, and stays on once set.
    reuse_memory: bool = False


@dataclass
class OptimCfg:
    lr: float = 1e-3
    weight_decay: float = 0.05
    fused: bool | None = None  # None: torch's default for the device
    foreach: bool | None = None
    schedule: Schedule = Schedule.cosine  # per step, over the whole run
    lr_warmup_steps: int = 0  # linear warm-up from 0 before the schedule


@dataclass
class CompileCfg:
    enabled: bool = False
    mode: CompileMode = CompileMode.default
    fullgraph: bool = False
    dynamic: bool | None = None
    optimizer: bool = False  # also compile the optimizer step (trainer.step=module)


@dataclass
class AmpCfg:
    enabled: bool = False
    dtype: AmpDtype = AmpDtype.bf16


@dataclass
class OnnxRuntimeOptions:
    """The `onnxruntime` backend's session settings, recorded with every cell."""

    intra_op_threads: int | None = None  # None: ONNX Runtime's default (one per core)
    # ORT's idle workers spin for a while after each run: fine alone, but in a sweep they steal the cores from the
    # next cell's runtime (torch, or ORT itself). Off unless asked for.
    spinning: bool = False
    graph_optimization: OrtGraphOptimization = OrtGraphOptimization.all


@dataclass
class InductorOptions:
    """The `inductor` backend's extra Inductor settings (its mode is `compile.mode`)."""

    freezing: bool = False  # fold the weights in as constants (inference only), enabling constant-folding passes
    cpp_wrapper: bool = False  # the compiled graph's Python wrapper as C++: less per-call overhead


@dataclass
class OpenvinoOptions:
    """The `openvino` backend (the optional extra requirements-openvino.txt) on the CPU."""

    hint: OpenvinoHint = OpenvinoHint.LATENCY
    threads: int | None = None  # INFERENCE_NUM_THREADS; None: OpenVINO's choice


@dataclass
class BenchCfg:
    # Validated against the backend registry by the bench command, so a new backend needs no edit here.
    backends: list[str] = field(default_factory=lambda: ["eager", "inductor", "onnxruntime", "tensorrt"])
    batch_sizes: list[int] = field(default_factory=lambda: [1, 64])
    precisions: list[str] = field(default_factory=lambda: ["fp32"])  # fp32 | bf16 | fp16 | int8
    repeats: int = 1  # each cell prepared and timed afresh this many times: median and 95 % interval
    export_dir: str | None = None  # an export run whose ONNX files / engines to run; None: export them here
    host_to_device: bool = False  # also time copying each cell's batch from pinned host memory to the GPU
    warmup_iters: int = 5  # warm-up: at least this many calls and this long
    warmup_min_s: float = 0.2
    min_iters: int = 20  # timed: at least this many calls and this long
    min_time_s: float = 1.0
    # A cell (prepare and timing, per repeat) still running after this many seconds is stopped and recorded as
    # `timeout`, and the sweep goes on; None: no limit.
    cell_timeout_s: float | None = None
    onnxruntime: OnnxRuntimeOptions = field(default_factory=OnnxRuntimeOptions)
    inductor: InductorOptions = field(default_factory=InductorOptions)
    openvino: OpenvinoOptions = field(default_factory=OpenvinoOptions)


@dataclass
class ProfileCfg:
    steps: int = 5  # profiled training steps and inference forwards
    warmup: int = 3  # untimed steps first (compilation, first calls)
    top: int = 15  # ops shown per table (result.json keeps them all)


@dataclass
class ParityRunCfg:
    """`python -m speedlab parity`: two training variants (A and B) stepped side by side on identical batches."""

    steps: int | None = None  # optimiser steps compared; None: trainer.epochs x the steps of an epoch
    copy_weights: bool = True  # B starts from A's initial weights (their state dicts must match)
    align_rng: bool = True  # B's stochastic layers (dropout, drop path) draw what A's draw, step by step
    # Largest relative loss difference still "equivalent", |a - b| / max(|a|, |b|, 1e-3); None: by the two sides'
    # compute dtypes (speedlab/parity/verdict.py: fp32 1e-4, fp16 1e-2, bf16 3e-2).
    tolerance: float | None = None
    evaluate: bool = True  # both sides' validation figures after the last step


@dataclass
class MonitorCfg:
    """The resource monitor every run carries: a background thread sampling CPU, memory and (NVML) GPU use."""

    enabled: bool = True
    interval_s: float = 0.5


@dataclass
class TrackingCfg:
    """Experiment tracking, chosen by the `tracking` group (`tracking=mlflow`: the optional extra in
    requirements-tracking.txt)."""

    backend: TrackingBackend = TrackingBackend.none
    # MLflow's tracking URI; None: a SQLite database at artifacts/mlflow/mlflow.db
    uri: str | None = None
    experiment: str | None = None  # None: the command and experiment name (a sweep: one experiment for all jobs)
    log_checkpoints: bool = False  # upload checkpoint.pt as an artifact (can be large)


@dataclass
class ParityCfg:
    """Limits an exported artifact must meet against the eager fp32 model on the fixed batch; None: not checked."""

    max_abs_error: float | None = None
    max_rel_error: float | None = 1e-4  # max |difference| over the largest |reference logit|
    min_cosine: float = 0.99999
    min_top1_agreement: float = 0.99


@dataclass
class ParityLimits:
    fp32: ParityCfg = field(default_factory=ParityCfg)
    half: ParityCfg = field(  # fp16 and bf16 engines
        default_factory=lambda: ParityCfg(max_rel_error=0.05, min_cosine=0.999, min_top1_agreement=0.95)
    )
    int8: ParityCfg = field(
        default_factory=lambda: ParityCfg(max_rel_error=None, min_cosine=0.99, min_top1_agreement=0.90)
    )


@dataclass
class ExportCfg:
    # ONNX fp32 is always exported: INT8 and TensorRT are built from it.
    formats: list[ExportFormat] = field(
        default_factory=lambda: [ExportFormat.onnx, ExportFormat.int8, ExportFormat.tensorrt]
    )
    onnx_exporter: OnnxExporter = OnnxExporter.dynamo
    opset: int = 18
    dynamic_batch: bool = True
    external_data: bool | None = None  # None: only when the weights pass 1 GiB (protobuf caps a file at 2 GiB)
    parity_batch_size: int = 256  # the fixed batch: the first images of the val split (top-1 agreement needs many)
    parity: ParityLimits = field(default_factory=ParityLimits)
    # INT8: ONNX Runtime static quantisation (QDQ), calibrated on training images without augmentation
    calibration_batches: int = 8
    calibration_batch_size: int = 32
    calibration_method: CalibrationMethod = CalibrationMethod.minmax
    per_channel: bool = True
    int8_head: bool = False  # quantise the classifier head too (costs top-1 agreement; see export/quantize.py)
    # TensorRT: one engine per precision; its optimisation profile spans bench.batch_sizes
    tensorrt_precisions: list[TrtPrecision] = field(default_factory=lambda: [TrtPrecision.fp32, TrtPrecision.fp16])
    workspace_gib: float = 4.0


@dataclass
class SpeedlabCfg:
    seed: int = 0
    name: str = "default"  # the experiment's name; exp configs set it, run directories carry it
    device: str = "auto"  # every command: auto | cpu | cuda | cuda:N
    resume: str | None = None  # train: a checkpoint.pt, or a run directory holding one, to continue from
    # export, bench: the trained model (checkpoint.pt or its run directory), whose family, model config and data
    # declaration replace this run's; None: a fresh model of this run's config
    checkpoint: str | None = None
    model: ModelCfg = MISSING  # a family's schema, chosen by the `model` group
    data: DataCfg = MISSING  # a source's schema, chosen by the `data` group
    trainer: TrainerCfg = field(default_factory=TrainerCfg)
    optim: OptimCfg = field(default_factory=OptimCfg)
    compile: CompileCfg = field(default_factory=CompileCfg)
    amp: AmpCfg = field(default_factory=AmpCfg)
    bench: BenchCfg = field(default_factory=BenchCfg)
    export: ExportCfg = field(default_factory=ExportCfg)
    profile: ProfileCfg = field(default_factory=ProfileCfg)
    parity: ParityRunCfg = field(default_factory=ParityRunCfg)
    monitor: MonitorCfg = field(default_factory=MonitorCfg)
    tracking: TrackingCfg = field(default_factory=TrackingCfg)


ConfigStore.instance().store(name="speedlab_schema", node=SpeedlabCfg)
# `${speedlab_pid:}` in conf/speedlab.yaml: run directories started in the same second stay apart. Cached like
# Hydra's `now`, so that a launcher running jobs in other processes (joblib) gets the launching process's value with
# the config's cache, and a sweep's jobs share its one directory.
OmegaConf.register_new_resolver("speedlab_pid", os.getpid, replace=True, use_cache=True)

PLUGIN_GROUPS = ("model", "data")


def register_schema(group: str, name: str, schema: type) -> None:
    """Store a plug-in's schema where its `conf/<group>/<name>.yaml` composes it (`/schema/<group>/<name>@_here_`),
    so that file's values, and every override of them, are checked against the plug-in's own keys and types."""
    if group not in PLUGIN_GROUPS:
        raise ValueError(f"group {group!r}: plug-in schemas go in {', '.join(PLUGIN_GROUPS)}")
    ConfigStore.instance().store(group=f"schema/{group}", name=name, node=schema)


def load_plugins() -> None:
    """Import every model family and data source, which registers their schemas: run before any composition."""
    import speedlab.data.sources
    import speedlab.models

    speedlab.models.names()
    speedlab.data.sources.names()


def structured(schema: type[Any], values: dict[str, Any], what: str) -> Any:
    """`values` (plain data, e.g. a checkpoint's model config) checked against `schema` and returned as an instance;
    a key or type the schema does not know raises SpeedlabError naming it and `what` the values came from."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), values))
    except OmegaConfBaseException as err:
        raise SpeedlabError(f"{what} does not fit {schema.__name__}: {_explain(err)}") from None


# Hydra flags that only print (config, help, info) and so never start a run.
PRINT_ONLY_FLAGS = frozenset(
    {"--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i", "--resolve", "--package", "-p"}
)

# One primary config per Hydra-driven command, all sharing conf/speedlab.yaml.
HYDRA_COMMANDS = ("train", "bench", "export", "profile", "parity", "data_prepare")


@dataclass(frozen=True)
class RunContext:
    """What a command gets: the typed config, the resolved config as plain data, and its run directory."""

    cfg: SpeedlabCfg
    resolved: dict[str, Any]
    run_dir: Path
    multirun: bool = False  # one job of a sweep: a job this machine cannot run is recorded as skipped
    overrides: tuple[str, ...] = ()  # what the user set on the command line (Hydra's task overrides)
    sweep: str | None = None  # a multirun's sweep directory name (one MLflow experiment per sweep); None: single run

    def overridden(self, group: str) -> bool:
        """Whether the command line sets `group` itself or any key under it (`model=mlp`, `model.widths=[8]`)."""
        return any(o.lstrip("+~").split("=", 1)[0].split(".", 1)[0].split("@", 1)[0] == group for o in self.overrides)


def typed(cfg: DictConfig) -> SpeedlabCfg:
    """Convert a composed config to dataclasses (the edge: nothing past here sees OmegaConf)."""
    return OmegaConf.to_object(cfg)  # type: ignore[return-value]


def resolved_dict(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # type: ignore[return-value]


def plain(node: Any) -> dict[str, Any]:
    """A typed config (any schema dataclass) as plain data, as result.json and checkpoints hold it."""
    return resolved_dict(OmegaConf.structured(node))


def _explain(err: BaseException) -> str:
    """Hydra's message plus its direct cause's (which names the key and, for choices, the valid values), without
    OmegaConf's message templates and Hydra's search-path listing."""
    text = str(err).strip()
    cause = err.__cause__
    if cause is not None and str(cause).strip() not in text:
        text += "\n" + str(cause).strip()
    text = text.split("Config search path:")[0]
    # Hydra suggests "+key=value" to append an unknown key: for a misspelt key that is the wrong advice.
    noise = ("$VALUE", "To append to your config", "reference_type=", "object_type=")
    return "\n".join(line for line in text.splitlines() if not any(n in line for n in noise)).strip()


def compose(command: str, overrides: Sequence[str] = ()) -> SpeedlabCfg:
    """Compose a command's config without starting a run; a bad override raises SpeedlabError naming it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    load_plugins()
    try:
        if GlobalHydra.instance().is_initialized():  # inside a running command (parity composes its two sides)
            return typed(hydra_compose(config_name=command, overrides=list(overrides)))
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return typed(hydra_compose(config_name=command, overrides=list(overrides)))
    except (HydraException, OmegaConfBaseException) as err:
        raise SpeedlabError(f"invalid configuration for {command}:\n{_explain(err)}") from None


def compose_resolved(command: str, overrides: Sequence[str] = ()) -> tuple[SpeedlabCfg, dict[str, Any]]:
    """`compose`, plus the resolved config as plain data (what result.json records of it)."""
    typed_cfg = compose(command, overrides)
    return typed_cfg, plain(typed_cfg)


def _split_print_sweep(argv: Sequence[str]) -> tuple[str, list[str]] | None:
    """For `--cfg X -m` (which Hydra itself refuses): the cfg type and the overrides; None for any other argv."""
    args = list(argv)
    if not {"-m", "--multirun"} & set(args) or not {"-c", "--cfg"} & set(args):
        return None
    cfg_type, overrides = "job", []
    it = iter(args)
    for arg in it:
        if arg in ("-m", "--multirun", "--resolve"):
            continue
        if arg in ("-c", "--cfg"):
            cfg_type = next(it, "job")
        elif arg.startswith("-"):
            raise SpeedlabError(f"flag {arg!r} cannot be combined with --cfg and --multirun")
        else:
            overrides.append(arg)
    return cfg_type, overrides


def _sweep_jobs(overrides: Sequence[str]) -> list[list[str]]:
    """The overrides of each job of a sweep: the expansion the basic sweeper does (glob() over a group's options,
    comma lists, ranges). Call inside an initialised Hydra context."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    return [
        job for batch in BasicSweeper.split_arguments(parser.parse_overrides(list(overrides)), None) for job in batch
    ]


def print_sweep_configs(command: str, cfg_type: str, overrides: Sequence[str]) -> int:
    """Compose and print every job of a sweep, as `--cfg` does for a single run; returns the number of jobs."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    if cfg_type not in ("job", "hydra", "all"):
        raise SpeedlabError(f"--cfg {cfg_type!r}: valid values are job, hydra, all")
    load_plugins()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        jobs = _sweep_jobs(overrides)
        for num, job in enumerate(jobs):
            cfg = hydra_compose(config_name=command, overrides=job, return_hydra_config=cfg_type != "job")
            if cfg_type == "hydra":
                cfg = cfg.hydra
            elif cfg_type == "all":
                cfg.hydra.job.num = num
            print(f"# job {num}: {' '.join(job) or '(no overrides)'}")
            print(OmegaConf.to_yaml(cfg))
    return len(jobs)


def validate(command: str, argv: Sequence[str]) -> None:
    """Compose every job `argv` asks for, so a bad override fails as one `speedlab: error:` before any run starts
    (Hydra itself would report it in its own format, and in a sweep only when that job's turn comes)."""
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    load_plugins()
    if PRINT_ONLY_FLAGS & set(argv):
        return  # Hydra reports a bad override itself while printing
    overrides = [a for a in argv if not a.startswith("-")]
    if not {"-m", "--multirun"} & set(argv):
        compose(command, overrides)
        return
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            jobs = _sweep_jobs(overrides)
    except (HydraException, OmegaConfBaseException) as err:
        raise SpeedlabError(f"invalid sweep for {command}:\n{_explain(err)}") from None
    for job in jobs:
        compose(command, job)


def run_command(command: str, argv: Sequence[str], task: Callable[[RunContext], int | None]) -> int:
    """The body of a Hydra-driven command's `main`: every job's overrides checked up front, then `task` per run."""
    validate(command, argv)
    run_hydra(command, argv, task)
    return 0


def run_hydra(command: str, argv: Sequence[str], task: Callable[[RunContext], int | None]) -> None:
    """Hand `argv` (overrides and Hydra flags) to Hydra for `command`; call `task` once per composed run."""
    from speedlab.device import quiet_cuda_home_warning

    quiet_cuda_home_warning()
    load_plugins()
    print_sweep = _split_print_sweep(argv)
    if print_sweep is not None:
        print_sweep_configs(command, *print_sweep)
        return

    def hydra_task(cfg: DictConfig) -> None:
        hydra_cfg = HydraConfig.get()
        ctx = RunContext(
            cfg=typed(cfg),
            resolved=resolved_dict(cfg),
            run_dir=Path(hydra_cfg.runtime.output_dir),
            multirun=hydra_cfg.mode == RunMode.MULTIRUN,
            overrides=tuple(hydra_cfg.overrides.task),
            sweep=Path(hydra_cfg.sweep.dir).name if hydra_cfg.mode == RunMode.MULTIRUN else None,
        )
        try:
            code = task(ctx)
        except SpeedlabError as err:  # bad input: one clear message, no traceback (result.json says failed)
            print(f"speedlab: error: {err}", file=sys.stderr)
            sys.exit(1)
        if code:
            sys.exit(code)

    if int(os.environ.get("RANK", "0")) > 0:
        # Under torchrun only rank 0 writes: the other ranks get no run directory, .hydra/ or log file.
        argv = [*argv, "hydra.run.dir=.", "hydra.output_subdir=null", "hydra/job_logging=disabled"]
    sys.argv = [f"speedlab {command}", *argv]
    hydra.main(config_path=str(CONF_DIR), config_name=command, version_base="1.3")(hydra_task)()
