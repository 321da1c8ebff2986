"""A model file as it is, with no PyTorch model behind it: what `bench source=FILE` runs.

`describe(path, sample_shape)` reads an ONNX file (or, where TensorRT is installed, a serialized engine) and returns
what bench needs: the file, its kind, and a `DataSpec` of its first input taken from the file itself (the shape of
one sample, the dtype; integer inputs are ids, whose range is the embedding table an initializer gives the first
Gather reading them), whether the batch axis is dynamic, and notes. A file that does not load, or whose non-batch
dimensions are symbolic with no `bench.input_shape` to fill them, is one SpeedlabError before any work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speedlab.data.spec import DataSpec
from speedlab.errors import SpeedlabError

ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
# ONNX's integer and float element types as torch dtype names.
_DTYPES = {"FLOAT": "float32", "FLOAT16": "float16", "BFLOAT16": "bfloat16", "DOUBLE": "float64", "INT64": "int64",
           "INT32": "int32", "INT8": "int8", "UINT8": "uint8"}  # fmt: skip


@dataclass
class ModelFile:
    path: Path
    kind: str  # onnx | tensorrt
    spec: DataSpec
    fixed_batch: int | None  # the one batch size a static file takes; None: dynamic
    input_name: str
    notes: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {"path": str(self.path), "kind": self.kind, "input": self.input_name, "fixed_batch": self.fixed_batch}


def describe(path: str | Path, sample_shape: list[int] | None = None) -> ModelFile:
    """What `path` declares; bad files raise SpeedlabError naming the file and the reason."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise SpeedlabError(f"source={path}: no such file (give an .onnx file, or a TensorRT engine)")
    if path.suffix in ENGINE_SUFFIXES:
        return _engine(path, sample_shape)
    if path.suffix not in ONNX_SUFFIXES:
        raise SpeedlabError(f"source={path}: unknown kind of file {path.suffix!r}; valid: "
                            f"{', '.join((*ONNX_SUFFIXES, *ENGINE_SUFFIXES))}")  # fmt: skip
    return _onnx(path, sample_shape)


def _onnx(path: Path, sample_shape: list[int] | None) -> ModelFile:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(str(path))  # by path: external data is checked beside the file
    except Exception as err:  # noqa: BLE001 - protobuf and the checker raise several types; all mean "unusable"
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SpeedlabError(f"source={path} does not load as an ONNX model: {reason}") from None
    initializers = {t.name: t for t in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    if not inputs:
        raise SpeedlabError(f"source={path}: the graph has no inputs")
    notes = [f"{path.name} has {len(inputs)} inputs; bench feeds the first ({inputs[0].name}) only"] if len(
        inputs) > 1 else []  # fmt: skip
    first = inputs[0]
    tensor = first.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim]
    dtype_name = onnx.TensorProto.DataType.Name(tensor.elem_type)
    if dtype_name not in _DTYPES:
        raise SpeedlabError(f"source={path}: input {first.name} is {dtype_name}; bench feeds "
                            f"{', '.join(_DTYPES)} inputs")  # fmt: skip
    if not dims:
        raise SpeedlabError(f"source={path}: input {first.name} is a scalar; bench needs a batch axis")
    sample = _sample_shape(path, first.name, dims[1:], sample_shape)
    dtype = _DTYPES[dtype_name]
    high = None
    if dtype.startswith(("int", "uint")):
        high = _id_range(model, first.name, initializers)
        if high is None:
            high = 2
            notes.append(f"input {first.name} holds integer ids and no embedding table bounds them: bench draws ids "
                         "0 and 1")  # fmt: skip
    outputs = model.graph.output[0].type.tensor_type.shape.dim if model.graph.output else []
    last = outputs[-1].dim_value if outputs and outputs[-1].HasField("dim_value") else 1
    spec = DataSpec("classification", tuple(sample), max(int(last), 1), input_dtype=dtype, input_high=high)
    fixed = dims[0] if isinstance(dims[0], int) and dims[0] > 0 else None
    return ModelFile(path, "onnx", spec, fixed, first.name, notes)


def _sample_shape(path: Path, name: str, dims: list[Any], given: list[int] | None) -> list[int]:
    """One sample's shape: the file's, with `bench.input_shape` filling (or replacing) it."""
    if given:
        if len(given) != len(dims):
            raise SpeedlabError(f"bench.input_shape={list(given)}: input {name} of {path.name} has {len(dims)} "
                                f"dimensions after the batch ({dims})")  # fmt: skip
        return [int(d) for d in given]
    symbolic = [d for d in dims if not isinstance(d, int) or d < 1]
    if symbolic:
        raise SpeedlabError(f"source={path}: input {name} has symbolic dimensions {dims} after the batch; give one "
                            f"sample's shape, e.g. bench.input_shape=[{', '.join('N' for _ in dims)}]")  # fmt: skip
    return dims


def _id_range(model: Any, name: str, initializers: dict[str, Any]) -> int | None:
    """Rows of the embedding table the first Gather reading `name` looks ids up in (its first dimension)."""
    for node in model.graph.node:
        if node.op_type == "Gather" and len(node.input) > 1 and node.input[1] == name and node.input[0] in initializers:
            return int(initializers[node.input[0]].dims[0])
    return None


def _engine(path: Path, sample_shape: list[int] | None) -> ModelFile:
    try:
        import tensorrt as trt
    except ImportError:
        why = "TensorRT is not installed here (an optional extra: pip install 'speedlab[gpu]' on an NVIDIA GPU machine)"
        raise SpeedlabError(f"source={path} is a TensorRT engine, and {why}") from None
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(path.read_bytes())
    if engine is None:
        raise SpeedlabError(f"source={path} is not an engine this TensorRT ({trt.__version__}) can load")
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    name = next(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
    dims = list(engine.get_tensor_shape(name))
    sample = _sample_shape(path, name, [d if d > 0 else "?" for d in dims[1:]], sample_shape)
    dtype = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT32": "int32", "INT64": "int64"}.get(
        engine.get_tensor_dtype(name).name, "float32")  # fmt: skip
    high = 2 if dtype.startswith("int") else None
    spec = DataSpec("classification", tuple(sample), 1, input_dtype=dtype, input_high=high)
    return ModelFile(path, "tensorrt", spec, dims[0] if dims[0] > 0 else None, name)
