"""`python -m speedlab inspect PATH [--summary-only] [--port N] [--browser]`: what an exported artifact holds.

Prints a summary of an ONNX file (opset, inputs and outputs with shapes, node counts by op type, parameter bytes,
any non-standard domains), of a TensorRT engine's JSON sidecar, or of an AOTInductor package (`.pt2`: the device and
CPU instruction set it was compiled for, the torch that built it and whether this one can load it, its compiled
files), then serves the file with netron on 127.0.0.1 until Ctrl-C, printing the URL; a browser opens only with
`--browser`. A `.pt2` package holds compiled code, which netron cannot draw: its summary is all there is.
"""

from __future__ import annotations

import argparse
import json
import math
import socket
import zipfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from speedlab import record
from speedlab.errors import SpeedlabError
from speedlab.export.formats import aotinductor
from speedlab.export.formats.onnx import STANDARD_DOMAINS

HOST = "127.0.0.1"
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
AOTI_DIR = "/data/aotinductor/"  # where a .pt2 archive keeps each compiled model's files


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    path = Path(args.path).expanduser()
    summary = summarise(path)
    print(format_summary(summary))
    if args.summary_only or summary["kind"] == "pt2":
        return 0
    if args.port is not None:
        check_port(args.port)
    serve(path, args.port, args.browser)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m speedlab inspect", description="Summarise an ONNX file or TensorRT engine; view it in netron."
    )
    parser.add_argument("path", help="an .onnx file, a TensorRT engine with its .json sidecar, or a .pt2 package")
    parser.add_argument("--summary-only", action="store_true", help="print the summary and exit (no netron)")
    parser.add_argument("--port", type=int, help=f"serve on this port of {HOST} (default: a free one)")
    parser.add_argument("--browser", action="store_true", help="also open the page in a web browser")
    return parser


def summarise(path: Path) -> dict[str, Any]:
    """What the file holds, as plain data; a missing file or one that is not a model raises SpeedlabError."""
    if not path.exists():
        raise SpeedlabError(f"{path}: no such file")
    if not path.is_file():
        raise SpeedlabError(f"{path}: not a file (give an .onnx file, a TensorRT engine or a .pt2 package)")
    if path.suffix == aotinductor.SUFFIX:
        return _pt2_summary(path)
    if path.suffix in ENGINE_SUFFIXES or path.name.endswith(tuple(s + ".json" for s in ENGINE_SUFFIXES)):
        return _engine_summary(path)
    return _onnx_summary(path)


def _onnx_summary(path: Path) -> dict[str, Any]:
    import onnx

    try:  # protobuf whatever the suffix (onnx.load would read a .json as JSON)
        model = onnx.load(str(path), format="protobuf", load_external_data=False)
    except Exception as err:  # noqa: BLE001 - protobuf raises several types; all mean "not an ONNX model"
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SpeedlabError(f"{path} is not an ONNX model ({reason})") from None
    if model.ir_version <= 0 or not model.graph.node:
        raise SpeedlabError(f"{path} is not an ONNX model (it holds no graph)")
    graph = model.graph
    nodes = [*graph.node, *(n for f in model.functions for n in f.node)]
    initializers = [_tensor_size(t) for t in graph.initializer]
    return {
        "kind": "onnx",
        "path": str(path),
        "file_bytes": path.stat().st_size,
        "ir_version": model.ir_version,
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "opset": next((imp.version for imp in model.opset_import if imp.domain in STANDARD_DOMAINS), None),
        "other_opsets": {imp.domain: imp.version for imp in model.opset_import if imp.domain not in STANDARD_DOMAINS},
        "inputs": [_value_info(v) for v in graph.input if v.name not in {t.name for t in graph.initializer}],
        "outputs": [_value_info(v) for v in graph.output],
        "nodes": len(nodes),
        "op_counts": dict(Counter(n.op_type for n in nodes).most_common()),
        "parameters": sum(count for count, _ in initializers),
        "parameter_bytes": sum(size for _, size in initializers),
        "external_data": any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.initializer),
        "non_standard_domains": sorted({n.domain for n in nodes if n.domain not in STANDARD_DOMAINS}),
    }


def _tensor_size(tensor: Any) -> tuple[int, int]:
    """(elements, bytes) of an initializer, without loading external data."""
    import onnx

    count = math.prod(tensor.dims)
    return count, count * onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize


def _value_info(value: Any) -> dict[str, Any]:
    import onnx

    tensor = value.type.tensor_type
    shape = [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in tensor.shape.dim]
    return {"name": value.name, "dtype": onnx.TensorProto.DataType.Name(tensor.elem_type).lower(), "shape": shape}


def _engine_summary(path: Path) -> dict[str, Any]:
    engine = path.with_name(path.name.removesuffix(".json")) if path.suffix == ".json" else path
    sidecar = record.sidecar_path(engine)
    try:
        info = json.loads(sidecar.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SpeedlabError(
            f"{engine} has no readable sidecar {sidecar.name} ({err}); speedlab writes one beside each engine"
        ) from None
    if not isinstance(info, dict) or info.get("format") != "tensorrt":
        raise SpeedlabError(f"{sidecar} is not a TensorRT engine's sidecar")
    return {
        "kind": "tensorrt",
        "path": str(engine),
        "file_bytes": engine.stat().st_size if engine.is_file() else None,
        **info,
    }


def _pt2_summary(path: Path) -> dict[str, Any]:
    meta = aotinductor.metadata(path)  # raises, naming the file, when it is no AOTInductor package
    with zipfile.ZipFile(path) as archive:
        members = {i.filename: i.file_size for i in archive.infolist()}
    try:
        aotinductor.check_loadable(path)
        loadable = f"yes (torch {meta.get('speedlab_torch', 'unrecorded')})"
    except SpeedlabError as err:
        loadable = f"no: {err}"
    return {
        "kind": "pt2",
        "path": str(path),
        "file_bytes": path.stat().st_size,
        "device": meta.get("AOTI_DEVICE_KEY"),
        "cpu_isa": meta.get("AOTI_CPU_ISA") or None,
        "compute_capability": meta.get("AOTI_COMPUTE_CAPABILITY") or None,
        "torch": meta.get("speedlab_torch"),
        "speedlab": meta.get("speedlab_version"),
        "batch_range": meta.get("speedlab_batch_range"),
        "loadable_here": loadable,
        "models": sorted({n.split(AOTI_DIR)[1].split("/")[0] for n in members if AOTI_DIR in n}),
        "libraries": {Path(n).name: size for n, size in members.items() if n.endswith(".so")},
        "kernel_sources": len([n for n in members if n.endswith(".cpp")]),
    }


def format_summary(s: dict[str, Any]) -> str:
    if s["kind"] == "pt2":
        lines = [f"{s['path']}: AOTInductor package, {_mib(s['file_bytes'])}, compiled for {s['device']}"
                 + (f" ({s['cpu_isa']})" if s["cpu_isa"] else "")
                 + (f" (compute capability {s['compute_capability']})" if s["compute_capability"] else ""),
                 f"  built by torch {s['torch'] or 'unrecorded'}, speedlab {s['speedlab'] or 'unrecorded'}; "
                 f"batch {s['batch_range'] or 'unrecorded'}",
                 f"  loadable by this torch: {s['loadable_here']}",
                 f"  models: {', '.join(s['models'])}; {s['kernel_sources']} C++ sources",
                 *(f"  {name}: {_mib(size)}" for name, size in s["libraries"].items()),
                 "  (compiled code: netron cannot draw it; export.formats=[onnx] gives a graph to view)"]  # fmt: skip
        return "\n".join(lines)
    if s["kind"] == "tensorrt":
        lines = [f"{s['path']}: TensorRT engine, {_mib(s['file_bytes'])}"]
        lines += [f"  {key}: {s[key]}" for key in ("tensorrt", "gpu", "compute_capability", "precision")]
        lines.append(f"  profile: {json.dumps(s.get('profile'))}")
        lines.append(f"  built from {s.get('source_onnx')} in {s.get('build_time_s')} s")
        return "\n".join(lines)
    others = ", ".join(f"{domain} {version}" for domain, version in s["other_opsets"].items())
    lines = [
        f"{s['path']}: ONNX (IR {s['ir_version']}, opset {s['opset']}), from {s['producer'] or 'unknown producer'}",
        *([f"  also imports: {others}"] if others else []),
        f"  file {_mib(s['file_bytes'])}; {s['parameters']:,} parameters in {_mib(s['parameter_bytes'])}"
        + (" (external data)" if s["external_data"] else ""),
        *(f"  input  {v['name']}: {v['dtype']} {v['shape']}" for v in s["inputs"]),
        *(f"  output {v['name']}: {v['dtype']} {v['shape']}" for v in s["outputs"]),
        f"  {s['nodes']} nodes:",
        *(f"    {op:<24} {count:>5}" for op, count in s["op_counts"].items()),
        "  non-standard domains: " + (", ".join(s["non_standard_domains"]) or "none (standard ONNX ops only)"),
    ]
    return "\n".join(lines)


def _mib(size: int | None) -> str:
    return "size unknown" if size is None else f"{size / 2**20:.2f} MiB"


def check_port(port: int) -> None:
    """Fail clearly before netron starts if `port` cannot be served on."""
    if not 0 < port < 65536:
        raise SpeedlabError(f"--port {port}: valid ports are 1-65535 (or leave --port out for a free one)")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the HTTP server will
        try:
            probe.bind((HOST, port))
        except OSError as err:
            raise SpeedlabError(
                f"--port {port}: {HOST}:{port} is not free ({err.strerror}); choose another, or leave --port out"
            ) from None


def serve(path: Path, port: int | None, browser: bool) -> None:
    """Serve `path` with netron until Ctrl-C."""
    import netron

    address = netron.serve(str(path), None, address=(HOST, port or 0), browse=browser)
    print(f"netron: serving {path.name} at http://{address[0]}:{address[1]}/ (Ctrl-C to stop)", flush=True)
    netron.wait()  # returns on Ctrl-C, after stopping the server
