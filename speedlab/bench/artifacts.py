"""The artifacts the onnxruntime and tensorrt backends run, asked of export (`speedlab.export.artifacts`): from an
export run (`bench.export_dir`), else built by export's format registry, parity-checked once against the eager model
and cached by content, so a second sweep over the same model reuses them; or, with `bench source=FILE`, that file as
it is (`speedlab.export.files`). INT8 made here is calibrated on random inputs: fine for latency, meaningless for
accuracy, whose check is the export command's job on real data. Bench imports nothing else of export."""

from __future__ import annotations

from pathlib import Path

from speedlab.bench.backends import BenchSetup
from speedlab.export import artifacts, files
from speedlab.export.artifacts import Obtained
from speedlab.export.files import ModelFile

# The ONNX artifact of each precision ONNX Runtime runs: the fp32 export and its INT8 quantisation.
ONNX_FORMATS = {"fp32": "onnx", "int8": "int8"}
CALIBRATION_BATCHES = 4


def artifact(setup: BenchSetup, fmt: str, precision: str) -> Obtained:
    """The `fmt` artifact at `precision` for this sweep's model; built (and its time added to
    `setup.shared['export_s']`) at most once per sweep, and not at all when export's cache holds it."""
    wanted = setup.artifacts
    if setup.file is not None:  # `bench source=FILE`: the file itself, as it is
        return Obtained(fmt, precision, setup.file.path, "ok", reason="the given file, not checked against a model",
                        cached=True)  # fmt: skip
    if wanted.export_dir:
        return artifacts.from_run(Path(wanted.export_dir), fmt, precision)
    key = ("artifact", fmt, precision)
    if key not in setup.shared:
        obtained = artifacts.obtain(
            setup.model, setup.spec, wanted.export, fmt, precision,
            batch_range=wanted.batch_range,
            calibration=lambda: (setup.inputs(8).cpu().numpy() for _ in range(CALIBRATION_BATCHES)),
            calibration_label=f"random, {CALIBRATION_BATCHES} x 8",
            classification=setup.spec.task == "classification",
        )  # fmt: skip
        setup.shared.setdefault("export_s", {})[f"{fmt} {precision}"] = obtained.build_s
        setup.shared[key] = obtained
    return setup.shared[key]


def model_file(path: str, sample_shape: list[int] | None) -> ModelFile:
    """A model file to bench as it is (`bench source=FILE`): what it declares, read from the file."""
    return files.describe(path, sample_shape)
