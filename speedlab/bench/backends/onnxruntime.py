"""`onnxruntime`: the ONNX model (fp32, or INT8 QDQ) export provides, in an ONNX Runtime session.

On a CUDA device it uses the CUDA provider with IOBinding, so inputs and outputs stay on the GPU and no host copy is
timed; elsewhere the CPU provider with the input as a host array. `bench.onnxruntime` sets the threads, whether idle
workers spin (off by default: spinning workers steal the cores from whatever runs next in the process) and the graph
optimisation level; every cell records them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from speedlab.bench.artifacts import ONNX_FORMATS, artifact
from speedlab.bench.backends import BenchSetup, Prepared, register
from speedlab.config import Choice, at_least


class GraphOptimization(Choice):
    disable = "disable"
    basic = "basic"
    extended = "extended"
    all = "all"


@dataclass
class OnnxRuntimeOptions:
    """`bench.onnxruntime`: the session settings, recorded with every cell."""

    intra_op_threads: int | None = None  # None: ONNX Runtime's default (one per core)
    # ORT's idle workers spin for a while after each run: fine alone, but in a sweep they steal the cores from the
    # next cell's runtime (torch, or ORT itself). Off unless asked for.
    spinning: bool = False
    graph_optimization: GraphOptimization = GraphOptimization.all  # ORT's graph optimisation level

    def __post_init__(self) -> None:
        at_least("bench.onnxruntime.intra_op_threads", self.intra_op_threads, 1, optional=True)


@register("onnxruntime", OnnxRuntimeOptions)
class OnnxRuntime:
    name = "onnxruntime"
    concurrent_requests = True  # its run is safe to call from several threads at once
    runs_files = ("onnx",)  # `bench source=FILE` of these kinds, as they are

    def unsupported(self, setup: BenchSetup, precision: str) -> str | None:
        if precision not in ONNX_FORMATS:
            return f"onnxruntime runs the fp32 and int8 ONNX models, not {precision}"
        if setup.device.type == "cuda" and "CUDAExecutionProvider" not in _available():
            return "this onnxruntime build has no CUDA provider (install onnxruntime-gpu from requirements-gpu.txt)"
        return None

    def prepare(self, setup: BenchSetup, batch_size: int, precision: str) -> Prepared:
        import onnxruntime as ort

        onnx = artifact(setup, ONNX_FORMATS[precision], precision)
        path = onnx.path
        cuda = setup.device.type == "cuda"
        provider = "CUDAExecutionProvider" if cuda else "CPUExecutionProvider"
        settings = setup.options_for(self.name)
        options = session_options(settings)
        start = time.perf_counter()
        session = ort.InferenceSession(str(path), options, providers=[provider])
        setup_s = time.perf_counter() - start
        name = session.get_inputs()[0].name
        notes = {"provider": provider, **onnx.notes(), "ort_intra_op_threads": settings.intra_op_threads,
                 "ort_spinning": settings.spinning,
                 "ort_graph_optimization": str(settings.graph_optimization)}  # fmt: skip
        if not cuda:
            images = setup.inputs(batch_size).cpu().numpy()
            return Prepared(run=lambda: session.run(None, {name: images}), setup_s=setup_s, notes=notes)
        return Prepared(run=_bound(session, name, setup.inputs(batch_size)), setup_s=setup_s, notes=notes)


GRAPH_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
                "all": "ORT_ENABLE_ALL"}  # fmt: skip


def session_options(settings):
    """ONNX Runtime session options from `bench.onnxruntime`: threads, spinning and the graph optimisation level."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if settings.intra_op_threads:
        options.intra_op_num_threads = settings.intra_op_threads
    spin = "1" if settings.spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    options.add_session_config_entry("session.inter_op.allow_spinning", spin)
    level = GRAPH_LEVELS[str(settings.graph_optimization)]
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    return options


def _available() -> list[str]:
    import onnxruntime as ort

    return ort.get_available_providers()


def _bound(session, input_name: str, inputs: torch.Tensor):
    """A run over device buffers: IOBinding to the input tensor (its own dtype: float, or int64 ids) and to outputs
    ONNX Runtime allocates on the same device, every output of the model."""
    binding = session.io_binding()
    index = inputs.device.index or 0
    element = torch.empty(0, dtype=inputs.dtype).numpy().dtype.type
    binding.bind_input(input_name, "cuda", index, element, tuple(inputs.shape), inputs.data_ptr())
    for output in session.get_outputs():
        binding.bind_output(output.name, "cuda", index)

    def run() -> None:
        session.run_with_iobinding(binding)

    return run
