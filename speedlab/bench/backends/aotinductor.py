"""`aotinductor`: the model as an AOTInductor package (`.pt2`: `torch.export`, compiled ahead of time to C++ with the
weights frozen in), asked of export's format registry like the ONNX models, parity-checked once and cached, then
loaded with `torch._inductor.aoti_load_package` and run with no Python model behind it: on the CPU, or on a CUDA
device when the cell's is one (format `aotinductor_cuda`).

By default each batch size gets its own static package (every kernel specialised to that shape, as inductor's
cells are); `bench.aotinductor.dynamic_batch=true` builds one package over the sweep's batch range instead, what a
server taking any batch would deploy. Loading the package is the cell's `setup_s`; compiling it is export's
(`export_s`), paid once per model and shape while the cache holds it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from speedlab.bench.artifacts import artifact, load_package, unavailable
from speedlab.bench.backends import BenchSetup, Prepared, register


@dataclass
class AotInductorOptions:
    """`bench.aotinductor`: one static package per batch size, or one over the sweep's batch range."""

    dynamic_batch: bool = False  # one package with a dynamic batch axis over [min, max] of bench.batch_sizes


@register("aotinductor", AotInductorOptions)
class AotInductor:
    name = "aotinductor"

    def unsupported(self, setup: BenchSetup, precision: str) -> str | None:
        if precision != "fp32":
            return f"aotinductor packages the fp32 model here, not {precision}"
        if setup.model is None:
            return "aotinductor compiles a PyTorch model; a model file has none"
        return unavailable(_format(setup.device))

    def prepare(self, setup: BenchSetup, batch_size: int, precision: str) -> Prepared:
        dynamic = setup.options_for(self.name).dynamic_batch
        package = artifact(setup, _format(setup.device), precision,
                           batch_range=None if dynamic else (batch_size, batch_size))  # fmt: skip
        start = time.perf_counter()
        compiled = load_package(package.path, str(setup.device))
        images = setup.inputs(batch_size)

        def run() -> object:
            with torch.no_grad():
                return compiled(images)

        run()  # the first call allocates the package's buffers: part of loading, not of a timed call
        setup_s = time.perf_counter() - start
        return Prepared(run=run, setup_s=setup_s, notes={**package.notes(), "dynamic_batch": dynamic})


def _format(device: torch.device) -> str:
    return "aotinductor_cuda" if device.type == "cuda" else "aotinductor"
