"""`tensorrt`: a TensorRT engine per precision, from the export run (`bench.export_dir`) or built here from the
ONNX model with the export command's builder (its build time is the cell's `setup_s`). Skipped with the reason where
tensorrt or a CUDA device is missing."""

from __future__ import annotations

import time
from pathlib import Path

from speedlab import record
from speedlab.bench.artifacts import onnx_model
from speedlab.bench.backends import BenchSetup, Prepared, register
from speedlab.export.formats import onnx as onnx_export
from speedlab.export.formats import tensorrt as trt_export


@register("tensorrt")
class TensorRT:
    name = "tensorrt"

    def unsupported(self, setup: BenchSetup, precision: str) -> str | None:
        return trt_export.unavailable_reason()

    def prepare(self, setup: BenchSetup, batch_size: int, precision: str) -> Prepared:
        engine, setup_s = self._engine(setup, precision)
        start = time.perf_counter()
        runner = trt_export.EngineRunner(engine)
        images = setup.inputs(batch_size)
        return Prepared(
            run=lambda: runner(images), setup_s=setup_s + time.perf_counter() - start, notes={"engine": str(engine)}
        )

    def _engine(self, setup: BenchSetup, precision: str) -> tuple[Path, float]:
        if setup.cfg.bench.export_dir:
            return record.engine_path(Path(setup.cfg.bench.export_dir), precision), 0.0
        key = f"engine_{precision}"
        if key not in setup.shared:
            sizes = setup.cfg.bench.batch_sizes
            profile = trt_export.Profile(
                onnx_export.INPUT_NAME, setup.spec.input_shape, min(sizes), max(sizes), max(sizes)
            )
            path = record.engine_path(setup.work_dir, precision)
            source = onnx_model(setup, "int8" if precision == "int8" else "fp32")
            build_s = trt_export.build_engine(source, path, precision, profile, setup.cfg.export.workspace_gib)
            setup.shared[key] = (path, build_s)
            return path, build_s
        return setup.shared[key][0], 0.0
