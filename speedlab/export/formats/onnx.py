"""ONNX export with either of torch's exporters, a dynamic batch axis, optional external data, and a check that the
graph holds standard ONNX ops only.

Custom ops of registered activations reach ONNX through the builders they register (`activations.onnx_builders()`):
here each builder is adapted to the dynamo exporter's translation table and to the TorchScript exporter's symbolic
functions, so the exported graph holds the op's math in standard ops and runs on ONNX Runtime and TensorRT alike.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

import activations
from speedlab import record
from speedlab.config import ExportCfg
from speedlab.export.formats import BuildRequest, Runner, register
from speedlab.fsutil import staged_files

# Whatever the data: images or feature vectors in, logits or regression outputs out.
INPUT_NAME, OUTPUT_NAME = "input", "output"
STANDARD_DOMAINS = ("", "ai.onnx")
# Above this many bytes of weights the model goes to external data: protobuf caps one file at 2 GiB.
EXTERNAL_DATA_ABOVE = 1 << 30
MAX_DYNAMIC_BATCH = 1 << 16


def wants_external_data(cfg: ExportCfg, model: nn.Module) -> bool:
    if cfg.external_data is not None:
        return cfg.external_data
    return sum(p.numel() * p.element_size() for p in model.parameters()) > EXTERNAL_DATA_ABOVE


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path, cfg: ExportCfg, *, external_data: bool) -> None:
    """Write `model` (in eval mode, on the CPU) to `path`; its files appear only once the export succeeded."""
    exporter = _dynamo if str(cfg.onnx_exporter) == "dynamo" else _torchscript
    with staged_files(path) as staged, quiet(), torch.no_grad():
        exporter(model, example, staged, cfg, external_data)


def _dynamo(model: nn.Module, example: torch.Tensor, path: Path, cfg: ExportCfg, external_data: bool) -> None:
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=MAX_DYNAMIC_BATCH)},) if cfg.dynamic_batch else None
    program = torch.onnx.export(
        model, (example,), dynamo=True, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
        opset_version=cfg.opset, dynamic_shapes=dynamic_shapes, custom_translation_table=_translation_table(cfg.opset),
        verbose=False,
    )  # fmt: skip
    program.save(str(path), external_data=external_data)


def _torchscript(model: nn.Module, example: torch.Tensor, path: Path, cfg: ExportCfg, external_data: bool) -> None:
    for op_name, symbolic in _symbolics().items():
        torch.onnx.register_custom_op_symbolic(op_name, symbolic, cfg.opset)
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if cfg.dynamic_batch else None
    torch.onnx.export(
        model, (example,), str(path), dynamo=False, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
        opset_version=cfg.opset, dynamic_axes=axes,
    )  # fmt: skip
    if external_data:  # this exporter moves weights out by itself only past 2 GiB
        import onnx

        model = onnx.load(str(path))
        onnx.save_model(model, str(path), save_as_external_data=True, location=f"{path.name}.data")


def _resolve_op(op_name: str) -> Any:
    namespace, name = op_name.split("::")
    return getattr(getattr(torch.ops, namespace), name).default


def _translation_table(opset: int) -> dict[Callable, Callable]:
    """The dynamo exporter's table: each registered custom op traced as onnxscript ops of the target opset."""
    import onnxscript

    op = onnxscript.values.Opset("", opset)

    def adapt(builder: activations.OnnxBuilder) -> Callable:
        def node(op_type: str, *inputs: Any) -> Any:
            return getattr(op, op_type)(*inputs)

        def scalar(value: float, like: Any) -> Any:
            return op.CastLike(op.Constant(value_float=value), like)

        return lambda *inputs: builder(node, scalar, *inputs)

    return {_resolve_op(name): adapt(builder) for name, builder in activations.onnx_builders().items()}


def _symbolics() -> dict[str, Callable]:
    """The TorchScript exporter's symbolic functions for the same ops (CastLike needs opset 15 or later)."""

    def adapt(builder: activations.OnnxBuilder) -> Callable:
        def symbolic(g: Any, *inputs: Any) -> Any:
            def scalar(value: float, like: Any) -> Any:
                return g.op("CastLike", g.op("Constant", value_t=torch.tensor(value, dtype=torch.float32)), like)

            return builder(lambda op_type, *args: g.op(op_type, *args), scalar, *inputs)

        return symbolic

    return {name: adapt(builder) for name, builder in activations.onnx_builders().items()}


def non_standard_ops(path: Path) -> list[str]:
    """`domain::op` of every node (graph or local function) outside the standard ONNX domain."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    nodes = [*model.graph.node, *(n for f in model.functions for n in f.node)]
    return sorted({f"{n.domain}::{n.op_type}" for n in nodes if n.domain not in STANDARD_DOMAINS})


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """The exporters and ONNX Runtime's quantiser narrate every step (prints, warnings, INFO logs on the root
    logger, which Hydra routes to the console); the command prints its own lines, so their chatter is held back.
    A failure still raises, and its exception carries the details."""
    root = logging.getLogger()
    level = root.level
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        root.setLevel(logging.ERROR)  # onnxscript/onnx_ir loggers inherit it; the quantiser logs on root itself
        try:
            yield
        finally:
            root.setLevel(level)


@register("onnx")
class OnnxFormat:
    """ONNX fp32 straight from the PyTorch model, with either exporter; checked through every ONNX Runtime provider."""

    file_format = "onnx"

    def precisions(self, cfg: ExportCfg) -> list[str]:
        return ["fp32"]

    def source(self, precision: str) -> tuple[str, str] | None:
        return None

    def unavailable(self) -> str | None:
        return None

    def build(self, request: BuildRequest) -> Path:
        path = record.onnx_path(request.directory, "fp32")
        external = wants_external_data(request.cfg, request.model)
        export_onnx(request.model, request.example, path, request.cfg, external_data=external)
        request.extra["external_data"] = external
        return path

    def verify(self, path: Path) -> str | None:
        foreign = non_standard_ops(path)
        return f"non-standard ops in the graph: {', '.join(foreign)}" if foreign else None

    def runners(self, path: Path) -> dict[str, Runner]:
        return onnxruntime_runners(path)


def onnxruntime_runners(path: Path) -> dict[str, Runner]:
    """An ONNX file through each ONNX Runtime provider parity uses (the CPU, and CUDA where there is one)."""
    from speedlab.export import parity

    runners = {}
    for provider in parity.onnxruntime_providers():
        session = parity.onnxruntime_session(path, provider)
        runners[f"onnxruntime/{provider}"] = lambda inputs, session=session: parity.run_session(session, inputs)
    return runners
