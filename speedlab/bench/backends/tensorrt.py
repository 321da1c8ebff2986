"""`tensorrt`: a TensorRT engine per precision, which export provides (`bench.export_dir`, or built by its format
registry with one optimisation profile over the sweep's batch sizes and cached; the build time is the cell's
`setup_s` the first time). Skipped with the reason where tensorrt or a CUDA device is missing."""

from __future__ import annotations

import time

from speedlab.bench.artifacts import artifact
from speedlab.bench.backends import BenchSetup, Prepared, register
from speedlab.export import formats


@register("tensorrt")
class TensorRT:
    name = "tensorrt"
    runs_files = ("tensorrt",)  # `bench source=FILE` of these kinds, as they are

    def unsupported(self, setup: BenchSetup, precision: str) -> str | None:
        return formats.get("tensorrt").unavailable()

    def prepare(self, setup: BenchSetup, batch_size: int, precision: str) -> Prepared:
        engine = artifact(setup, "tensorrt", precision)
        build_s = setup.shared.pop(("engine build to charge", precision), engine.build_s)  # the first cell's only
        setup.shared[("engine build to charge", precision)] = 0.0
        start = time.perf_counter()
        runner = formats.get("tensorrt").device_runner(engine.path)
        images = setup.inputs(batch_size)
        return Prepared(run=lambda: runner(images), setup_s=build_s + time.perf_counter() - start,
                        notes=engine.notes())  # fmt: skip
