"""Activation registry: every activation speedlab can swap into a model, looked up by one name.

`names()` lists what is registered, `create(name)` returns a fresh `nn.Module`. Implementations register themselves
with `@register("name")` in their own module (the shared `registry.Registry`; other packages add theirs through the
entry-point group `speedlab.activations`); this package imports nothing from speedlab.

An activation built on a custom op (`torch.library.custom_op`) also registers how that op is written in standard
ONNX ops (`@register_onnx("namespace::op")`), so exported models run on ONNX Runtime and TensorRT. The builder is
exporter-neutral: export adapts it to the dynamo exporter's translation table and to the TorchScript exporter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn

from activations.registry import Registry, UnknownPluginError


class OnnxBuilder(Protocol):
    """Writes a custom op's math as ONNX nodes: `node(op_type, *inputs)` adds one standard-domain node and returns
    its output; `scalar(value, like)` is a constant of `like`'s dtype; the remaining arguments are the op's inputs."""

    def __call__(self, node: Callable[..., Any], scalar: Callable[[float, Any], Any], *inputs: Any) -> Any: ...


# Zero-argument factories (usually nn.Module classes), by name.
_REGISTRY = Registry("activation", entry_points="speedlab.activations")
_ONNX_BUILDERS: dict[str, OnnxBuilder] = {}
UnknownActivationError = UnknownPluginError  # raised for a name that is not registered, listing the valid names
register = _REGISTRY.register
names = _REGISTRY.names


def register_onnx(op_name: str) -> Callable[[OnnxBuilder], OnnxBuilder]:
    """Register how the custom op `op_name` ("namespace::name") is written in standard ONNX ops."""

    def decorator(builder: OnnxBuilder) -> OnnxBuilder:
        if op_name in _ONNX_BUILDERS:
            raise ValueError(f"ONNX builder for {op_name!r} is registered twice")
        _ONNX_BUILDERS[op_name] = builder
        return builder

    return decorator


def onnx_builders() -> dict[str, OnnxBuilder]:
    """Custom op name -> its ONNX builder, for every registered activation that needs one."""
    return dict(_ONNX_BUILDERS)


def create(name: str) -> nn.Module:
    """A fresh module for the activation registered as `name` (an unknown name raises UnknownActivationError)."""
    return _REGISTRY.get(name)()


def implementation(name: str, device: torch.device | str, dtype: torch.dtype = torch.float32) -> str:
    """Which implementation `name` runs for tensors of `device` and `dtype` (for result.json): the module's own
    answer when it has several (fastswish_triton: Triton or its fallback), else "pytorch"."""
    module = create(name)
    return module.implementation(device, dtype) if hasattr(module, "implementation") else "pytorch"


# Importing the implementation modules registers them.
from activations import builtin, fastswish, fastswish_triton, fasttanh  # noqa: E402,F401
