"""`onnxruntime`: the exported ONNX model (fp32, or INT8 QDQ) in an ONNX Runtime session.

On a CUDA device it uses the CUDA provider with IOBinding, so inputs and outputs stay on the GPU and no host copy is
timed; elsewhere the CPU provider with the input as a host array.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from speedlab.bench.artifacts import PRECISIONS, onnx_model
from speedlab.bench.backends import BenchSetup, Prepared, register


@register("onnxruntime")
class OnnxRuntime:
    name = "onnxruntime"

    def unsupported(self, setup: BenchSetup, precision: str) -> str | None:
        if precision not in PRECISIONS:
            return f"onnxruntime runs the fp32 and int8 ONNX models, not {precision}"
        if setup.device.type == "cuda" and "CUDAExecutionProvider" not in _available():
            return "this onnxruntime build has no CUDA provider (install onnxruntime-gpu from requirements-gpu.txt)"
        return None

    def prepare(self, setup: BenchSetup, batch_size: int, precision: str) -> Prepared:
        import onnxruntime as ort

        path = onnx_model(setup, precision)
        cuda = setup.device.type == "cuda"
        provider = "CUDAExecutionProvider" if cuda else "CPUExecutionProvider"
        options = ort.SessionOptions()
        options.log_severity_level = 3
        start = time.perf_counter()
        session = ort.InferenceSession(str(path), options, providers=[provider])
        setup_s = time.perf_counter() - start
        name = session.get_inputs()[0].name
        notes = {"provider": provider, "model": str(path)}
        if not cuda:
            images = setup.inputs(batch_size).cpu().numpy()
            return Prepared(run=lambda: session.run(None, {name: images}), setup_s=setup_s, notes=notes)
        return Prepared(run=_bound(session, name, setup.inputs(batch_size)), setup_s=setup_s, notes=notes)


def _available() -> list[str]:
    import onnxruntime as ort

    return ort.get_available_providers()


def _bound(session, input_name: str, images: torch.Tensor):
    """A run over device buffers: IOBinding to the input and to a preallocated output tensor."""
    output = session.get_outputs()[0]
    logits = torch.empty((images.shape[0], output.shape[-1]), dtype=torch.float32, device=images.device)
    binding = session.io_binding()
    index = images.device.index or 0
    binding.bind_input(input_name, "cuda", index, np.float32, tuple(images.shape), images.data_ptr())
    binding.bind_output(output.name, "cuda", index, np.float32, tuple(logits.shape), logits.data_ptr())

    def run() -> torch.Tensor:
        session.run_with_iobinding(binding)
        return logits

    return run
