"""Deployable artifacts: the `export` command (`command.py`), ONNX export (`onnx_export.py`), INT8 quantisation,
TensorRT engines, parity figures, and the `inspect` command (`inspection.py`)."""
