"""`inductor`: `torch.compile` of the model (mode from `bench.inductor.mode`), compiled afresh for each cell's
static shape, after the cell's inference levers (`bench.levers`).

Compilation happens on the first call, which `prepare` makes and times as the cell's `setup_s`. `bench.inductor`
adds weight freezing (the weights become constants, so Inductor folds them: e.g. a conv's weight prepacked once for
oneDNN) and the C++ wrapper (the compiled graph's launcher in C++ instead of Python).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from speedlab.bench import levers
from speedlab.bench.backends import BenchSetup, Prepared, register
from speedlab.bench.precision import torch_unsupported
from speedlab.config import CompileMode
from speedlab.monitor import dynamo_frames_compiled


@dataclass
class InductorOptions:
    """`bench.inductor`: torch.compile's mode and Inductor's inference settings."""

    mode: CompileMode = CompileMode.default  # default | reduce-overhead | max-autotune (C++ GEMM templates on the CPU)
    freezing: bool = False  # fold the weights in as constants (inference only), enabling constant-folding passes
    cpp_wrapper: bool = False  # the compiled graph's Python wrapper as C++: less per-call overhead


@register("inductor", InductorOptions)
class Inductor:
    name = "inductor"

    def unsupported(self, setup: BenchSetup, precision: str) -> str | None:
        return torch_unsupported(setup.device, precision)

    def prepare(self, setup: BenchSetup, batch_size: int, precision: str) -> Prepared:
        torch._dynamo.reset()  # each cell compiles (and is timed) on its own
        options = setup.options_for(self.name)
        mode = str(options.mode)
        cell = levers.prepare(setup.levers, setup.model, setup.inputs(batch_size), self.name, precision)
        compiled = torch.compile(cell.model, mode=mode, dynamic=False)
        images = cell.inputs

        def run() -> torch.Tensor:
            with cell.scope(setup.device, precision):
                return compiled(images)

        start = time.perf_counter()
        # Compilation happens in this first call, so the options only need to hold while it runs.
        with torch._inductor.config.patch(freezing=options.freezing, cpp_wrapper=options.cpp_wrapper):
            run()
        if setup.device.type == "cuda":
            torch.cuda.synchronize(setup.device)
        notes = {"mode": mode, "freezing": options.freezing, "cpp_wrapper": options.cpp_wrapper, "levers": cell.names}
        setup_s = time.perf_counter() - start
        return Prepared(run=run, setup_s=setup_s, notes=notes, frames_compiled=dynamo_frames_compiled)
