"""The ONNX files the onnxruntime and tensorrt backends run: from an export run (`bench.export_dir`), else exported
here once per sweep (INT8 then calibrated on random images: fine for latency, meaningless for accuracy, whose check
is the export command's job)."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import torch

from speedlab import record
from speedlab.bench.backends import BenchSetup
from speedlab.errors import SpeedlabError
from speedlab.export.formats import int8 as quantize
from speedlab.export.formats import onnx as onnx_export

PRECISIONS = tuple(record.ONNX_FILES)  # the ONNX models there are: fp32 and int8
CALIBRATION_BATCHES = 4


def onnx_model(setup: BenchSetup, precision: str) -> Path:
    """The fp32 or INT8 ONNX file; the export time of a file made here goes to `setup.shared['export_s']`."""
    if setup.cfg.bench.export_dir:
        path = record.onnx_path(Path(setup.cfg.bench.export_dir), precision)
        if not path.is_file():
            raise SpeedlabError(f"bench.export_dir={setup.cfg.bench.export_dir} holds no {path.name}")
        return path
    key = f"onnx_{precision}"
    if key not in setup.shared:
        path = record.onnx_path(setup.work_dir, precision)
        start = time.perf_counter()
        if precision == "fp32":
            # The exporter needs the model on the CPU; a copy keeps the shared eager model where every cell expects
            # it, even when the export fails half-way.
            model = setup.model if setup.device.type == "cpu" else copy.deepcopy(setup.model).to("cpu")
            ecfg = setup.cfg.export
            example = torch.randn(2, *setup.spec.input_shape)
            external = onnx_export.wants_external_data(ecfg, model)
            onnx_export.export_onnx(model, example, path, ecfg, external_data=external)
        else:
            batches = (setup.inputs(8).cpu().numpy() for _ in range(CALIBRATION_BATCHES))
            quantize.quantize_int8(onnx_model(setup, "fp32"), path, batches, setup.cfg.export)
        setup.shared.setdefault("export_s", {})[precision] = round(time.perf_counter() - start, 3)
        setup.shared[key] = path
    return setup.shared[key]
