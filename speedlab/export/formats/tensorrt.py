"""TensorRT engines from the exported ONNX, with the `tensorrt` Python API (TensorRT 10).

One engine per precision: fp32 (TF32 off, so it is the fp32 the name says), fp16, bf16, and int8 built from the QDQ
model (explicit quantisation; TensorRT 10 deprecates implicit calibrators). Each build has one optimisation profile
over the configured batch range, reuses and extends the timing cache in `artifacts/cache/tensorrt/`, and writes the
engine with a JSON sidecar (TensorRT version, GPU, precision, profile, build time).

Where `tensorrt` or a CUDA device is missing, `unavailable_reason()` says so and the export command records the
engines as skipped; nothing here is imported until a build or a run is asked for.
"""

from __future__ import annotations

import importlib.util
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speedlab import record
from speedlab.config import ExportCfg
from speedlab.errors import SpeedlabError
from speedlab.export.formats import BuildRequest, Runner, register
from speedlab.fsutil import atomic_path, atomic_write_json

PRECISIONS = ("fp32", "fp16", "bf16", "int8")


class EngineBuildError(SpeedlabError):
    """TensorRT could not parse the ONNX file or build an engine from it."""


def unavailable_reason() -> str | None:
    """Why no engine can be built on this machine, or None when one can."""
    if importlib.util.find_spec("tensorrt") is None:
        return "tensorrt is not installed (an optional extra: requirements-gpu.txt)"
    if not torch.cuda.is_available():
        return "no CUDA device (TensorRT needs an NVIDIA GPU)"
    return None


@dataclass(frozen=True)
class Profile:
    """The optimisation profile of the input: shapes (batch, *sample_shape) at min, opt and max batch, where the
    sample shape is what the data declares (C x H x W, or a feature count)."""

    input_name: str
    sample_shape: tuple[int, ...]
    min_batch: int
    opt_batch: int
    max_batch: int

    def shape(self, batch: int) -> tuple[int, ...]:
        return (batch, *self.sample_shape)


def build_engine(onnx_path: Path, engine_path: Path, precision: str, profile: Profile, workspace_gib: float) -> float:
    """Build and write the engine and its sidecar; returns the build time in seconds."""
    import tensorrt as trt

    if precision not in PRECISIONS:
        raise SpeedlabError(f"TensorRT precision {precision!r}: valid values are {', '.join(PRECISIONS)}")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    _set_precision(trt, config, precision)
    trt_profile = builder.create_optimization_profile()
    trt_profile.set_shape(
        profile.input_name, profile.shape(profile.min_batch), profile.shape(profile.opt_batch),
        profile.shape(profile.max_batch),
    )  # fmt: skip
    config.add_optimization_profile(trt_profile)

    gpu = torch.cuda.get_device_name()
    cache_path = record.tensorrt_timing_cache_path(gpu, trt.__version__)
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)

    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    build_time = time.perf_counter() - start
    if serialized is None:
        raise EngineBuildError(f"TensorRT failed to build a {precision} engine from {onnx_path} (see its log above)")
    with atomic_path(engine_path, suffix=".engine") as tmp:
        tmp.write_bytes(bytes(serialized))
    with atomic_path(cache_path, suffix=".cache") as tmp:  # the cache grows with every build; keep what it learnt
        tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    atomic_write_json(
        record.sidecar_path(engine_path),
        {
            "format": "tensorrt",
            "tensorrt": trt.__version__,
            "gpu": gpu,
            "compute_capability": ".".join(map(str, torch.cuda.get_device_capability())),
            "precision": precision,
            "profile": {**asdict(profile), "min_shape": profile.shape(profile.min_batch),
                        "opt_shape": profile.shape(profile.opt_batch), "max_shape": profile.shape(profile.max_batch)},
            "source_onnx": str(onnx_path),
            "build_time_s": round(build_time, 3),
            "timing_cache": str(cache_path),
        },
    )  # fmt: skip
    return build_time


def _set_precision(trt: Any, config: Any, precision: str) -> None:
    if precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)
    elif precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "bf16":
        config.set_flag(trt.BuilderFlag.BF16)
    else:  # int8 from Q/DQ nodes; layers left unquantised may use fp16
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)


class EngineRunner:
    """Runs a serialized engine on CUDA tensors: inputs and outputs stay on the device; call with a CUDA tensor."""

    def __init__(self, engine_path: Path) -> None:
        import tensorrt as trt

        self._trt = trt
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise EngineBuildError(f"{engine_path} is not an engine this TensorRT ({trt.__version__}) can load")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.input_name = next(n for n in names if is_input[n])
        self.output_name = next(n for n in names if not is_input[n])

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        inputs = inputs.contiguous()
        self.context.set_input_shape(self.input_name, tuple(inputs.shape))
        out_shape = tuple(self.context.get_tensor_shape(self.output_name))
        out_dtype = _TORCH_DTYPES[self.engine.get_tensor_dtype(self.output_name).name]
        output = torch.empty(out_shape, dtype=out_dtype, device=inputs.device)
        self.context.set_tensor_address(self.input_name, inputs.data_ptr())
        self.context.set_tensor_address(self.output_name, output.data_ptr())
        stream = torch.cuda.current_stream(inputs.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        return output


_TORCH_DTYPES = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT32": torch.int32}


def run_engine(engine_path: Path, inputs: np.ndarray) -> np.ndarray:
    """Outputs of `inputs` (a host array) through the engine, for parity checks."""
    runner = EngineRunner(engine_path)
    output = runner(torch.from_numpy(inputs).cuda())
    torch.cuda.synchronize()
    return output.float().cpu().numpy()


def read_sidecar(engine_path: Path) -> dict[str, Any]:
    path = record.sidecar_path(engine_path)
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SpeedlabError(f"{engine_path}: its sidecar {path.name} is missing or unreadable ({err})") from None


@register("tensorrt")
class TensorRTFormat:
    """One TensorRT engine per precision in `export.tensorrt_precisions`, from the fp32 ONNX model (int8: from the
    INT8 QDQ model), with one optimisation profile over the request's batch range."""

    file_format = "tensorrt"
    batch_range_matters = True  # the engine's optimisation profile covers the request's batch range

    def precisions(self, cfg: ExportCfg) -> list[str]:
        return list(dict.fromkeys(str(p) for p in cfg.tensorrt_precisions))

    def source(self, precision: str) -> tuple[str, str] | None:
        return ("int8", "int8") if precision == "int8" else ("onnx", "fp32")

    def unavailable(self) -> str | None:
        return unavailable_reason()

    def build(self, request: BuildRequest) -> Path:
        from speedlab.export.formats.onnx import INPUT_NAME

        path = record.engine_path(request.directory, request.precision)
        low, high = request.batch_range
        profile = Profile(INPUT_NAME, tuple(request.example.shape[1:]), low, high, high)
        request.extra["engine_build_s"] = build_engine(request.source, path, request.precision, profile,
                                                       request.cfg.workspace_gib)  # fmt: skip
        request.extra["profile_batch_range"] = [low, high]
        return path

    def verify(self, path: Path) -> str | None:
        return None

    def runners(self, path: Path) -> dict[str, Runner]:
        return {"tensorrt": lambda inputs: run_engine(path, inputs)}

    def device_runner(self, path: Path) -> EngineRunner:
        """The engine on CUDA tensors, inputs and outputs on the device (what bench times)."""
        return EngineRunner(path)
