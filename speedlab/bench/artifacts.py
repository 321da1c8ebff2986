"""The artifacts the onnxruntime, tensorrt and aotinductor backends run, asked of export (`speedlab.export.artifacts`):
from an export run (`bench.export_dir`), else built by export's format registry, parity-checked once against the
eager model and cached by content, so a second sweep over the same model reuses them; or, with `bench source=FILE`,
that file as it is (`speedlab.export.files`). INT8 made here is calibrated on random inputs: fine for latency,
meaningless for accuracy, whose check is the export command's job on real data. Bench imports nothing else of
export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from speedlab.bench.backends import BenchSetup
from speedlab.export import artifacts, files, formats
from speedlab.export.artifacts import Obtained
from speedlab.export.files import ModelFile

# The ONNX artifact of each precision ONNX Runtime runs: the fp32 export and its INT8 quantisation.
ONNX_FORMATS = {"fp32": "onnx", "int8": "int8"}
CALIBRATION_BATCHES = 4


def artifact(setup: BenchSetup, fmt: str, precision: str, batch_range: tuple[int, int] | None = None) -> Obtained:
    """The `fmt` artifact at `precision` for this sweep's model, covering `batch_range` (default: the sweep's
    sizes); built (and its time added to `setup.shared['export_s']`) at most once per sweep, and not at all when
    export's cache holds it."""
    wanted = setup.artifacts
    batch_range = batch_range or wanted.batch_range
    if setup.file is not None:  # `bench source=FILE`: the file itself, as it is
        return Obtained(fmt, precision, setup.file.path, "ok", reason="the given file, not checked against a model",
                        cached=True)  # fmt: skip
    if wanted.export_dir:
        return artifacts.from_run(Path(wanted.export_dir), fmt, precision)
    key = ("artifact", fmt, precision, batch_range)
    if key not in setup.shared:
        obtained = artifacts.obtain(
            setup.model, setup.spec, wanted.export, fmt, precision,
            batch_range=batch_range,
            calibration=lambda: (setup.inputs(8).cpu().numpy() for _ in range(CALIBRATION_BATCHES)),
            calibration_label=f"random, {CALIBRATION_BATCHES} x 8",
            classification=setup.spec.task == "classification",
        )  # fmt: skip
        label = f"{fmt} {precision}" if batch_range == wanted.batch_range else f"{fmt} {precision} {batch_range}"
        setup.shared.setdefault("export_s", {})[label] = obtained.build_s
        setup.shared[key] = obtained
    return setup.shared[key]


def unavailable(fmt: str) -> str | None:
    """Why export cannot build `fmt` artifacts on this machine (no compiler, no GPU, no TensorRT), or None."""
    return formats.get(fmt).unavailable()


def load_package(path: Path, device: str) -> Any:
    """An AOTInductor package, loaded to run on `device` once its torch version is checked."""
    from speedlab.export.formats import aotinductor

    return aotinductor.load(path, device)


def model_file(path: str, sample_shape: list[int] | None) -> ModelFile:
    """A model file to bench as it is (`bench source=FILE`): what it declares, read from the file."""
    return files.describe(path, sample_shape)
