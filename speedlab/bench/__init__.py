"""Inference benchmarking: the `bench` command (`command.py`), the timing harness, precisions, the ONNX files it
runs and the backends (`backends/`, one file each)."""

from speedlab.callable import forward

forward(__name__, "speedlab.api:bench")  # `speedlab.bench(...)` is the Python API (docs/python-api.md)
