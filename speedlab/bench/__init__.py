"""Inference benchmarking: the `bench` command (`command.py`), the timing harness, precisions, the ONNX files it
runs and the backends (`backends/`, one file each)."""
