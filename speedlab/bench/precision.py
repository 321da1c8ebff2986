"""Precisions a bench cell can ask for, and how torch-based backends run them (autocast)."""

from __future__ import annotations

import contextlib

import torch

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def torch_unsupported(device: torch.device, precision: str) -> str | None:
    """Why eager/inductor cannot run `precision` on `device` (autocast), or None."""
    if precision == "int8":
        return "int8 runs as a quantised ONNX model or TensorRT engine (backends onnxruntime, tensorrt)"
    if precision == "fp16" and device.type != "cuda":
        return "fp16 autocast needs a CUDA device (use bf16 on the CPU)"
    return None


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    dtype = AUTOCAST_DTYPES.get(precision)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
