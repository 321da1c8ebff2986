"""Deployable artifacts: the `export` command (`command.py`), ONNX export (`onnx_export.py`), INT8 quantisation,
TensorRT engines, parity figures, and the `inspect` command (`inspection.py`)."""

from speedlab.callable import forward

forward(__name__, "speedlab.api:export")  # `speedlab.export(...)` is the Python API (docs/python-api.md)
