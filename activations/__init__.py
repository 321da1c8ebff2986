"""Activation registry: every activation speedlab can swap into a model, looked up by one name.

`names()` lists what is registered, `create(name)` returns a fresh `nn.Module`. Implementations register themselves
with `@register("name")` in their own module; this package imports nothing from speedlab.

An activation built on a custom op (`torch.library.custom_op`) also registers how that op is written in standard
ONNX ops (`@register_onnx("namespace::op")`), so exported models run on ONNX Runtime and TensorRT. The builder is
exporter-neutral: export adapts it to the dynamo exporter's translation table and to the TorchScript exporter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn


class OnnxBuilder(Protocol):
    """Writes a custom op's math as ONNX nodes: `node(op_type, *inputs)` adds one standard-domain node and returns
    its output; `scalar(value, like)` is a constant of `like`'s dtype; the remaining arguments are the op's inputs."""

    def __call__(self, node: Callable[..., Any], scalar: Callable[[float, Any], Any], *inputs: Any) -> Any: ...


_REGISTRY: dict[str, Callable[[], nn.Module]] = {}
_ONNX_BUILDERS: dict[str, OnnxBuilder] = {}


class UnknownActivationError(KeyError):
    """Raised for a name that is not registered; its message lists the valid names."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


def register(name: str) -> Callable[[Callable[[], nn.Module]], Callable[[], nn.Module]]:
    """Register a zero-argument factory (usually an nn.Module class) under `name`."""

    def decorator(factory: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"activation {name!r} is registered twice")
        _REGISTRY[name] = factory
        return factory

    return decorator


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


def names() -> list[str]:
    """The registered activation names, sorted."""
    return sorted(_REGISTRY)


def create(name: str) -> nn.Module:
    """A fresh module for the activation registered as `name`."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise UnknownActivationError(f"unknown activation {name!r}; valid names: {', '.join(names())}") from None
    return factory()


def implementation(name: str, device: torch.device | str, dtype: torch.dtype = torch.float32) -> str:
    """Which implementation `name` runs for tensors of `device` and `dtype` (for result.json): the module's own
    answer when it has several (fastswish_triton: Triton or its fallback), else "pytorch"."""
    module = create(name)
    return module.implementation(device, dtype) if hasattr(module, "implementation") else "pytorch"


# Importing the implementation modules registers them.
from activations import builtin, fastswish, fastswish_triton, fasttanh  # noqa: E402,F401
