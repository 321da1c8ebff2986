"""Model families, one module each in this package, registered by name with their own config schema.

A family is a class decorated with `@register("name", SchemaCfg)` whose methods take the family's typed config and
what the data declares (`DataSpec`: input shape, number of outputs, task):

- `check(cfg, spec)`: every check `build` makes that needs no weights (run before any long work);
- `build(cfg, spec)`: a freshly initialised `nn.Module` on the CPU (initialisation draws from torch's global RNG);
- optionally `label(cfg)`: what the summary's "Changes" column says of this config (default: a swapped activation).

Every module in this package is imported on first use, so adding a family is adding its file plus its
`conf/model/<name>.yaml`; `model=<name>` then selects it, and the tests parametrize over `names()`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from torch import nn

from speedlab.config import ModelCfg
from speedlab.data.spec import DataSpec
from speedlab.plugins import Registry


class Family(Protocol):
    def check(self, cfg: Any, spec: DataSpec) -> None: ...

    def build(self, cfg: Any, spec: DataSpec) -> nn.Module: ...


_REGISTRY = Registry("model family", __name__, __path__, group="model")
register = _REGISTRY.register
names = _REGISTRY.names


def schema(name: str) -> type[ModelCfg]:
    return _REGISTRY.entry(name).schema


def _family(cfg: ModelCfg) -> Family:
    return _REGISTRY.for_config(cfg)


def check(cfg: ModelCfg, spec: DataSpec) -> None:
    """Every check `build` makes that needs no weights: run it before any long work."""
    _family(cfg).check(cfg, spec)


def build(cfg: ModelCfg, spec: DataSpec) -> nn.Module:
    """A freshly initialised model of `cfg`'s family for `spec`'s inputs and outputs, on the CPU."""
    family = _family(cfg)
    family.check(cfg, spec)
    return family.build(cfg, spec)


def label(cfg: ModelCfg) -> str | None:
    """What the "Changes" column says about the model: the family's own label, else the activation when it differs
    from the family's default (a swap, as in the reference's rows), else nothing."""
    family = _family(cfg)
    if hasattr(family, "label"):
        return family.label(cfg)
    activation = getattr(cfg, "activation", None)
    default = next((f.default for f in dataclasses.fields(cfg) if f.name == "activation"), None)
    return str(activation) if activation is not None and str(activation) != str(default) else None


def activation(cfg: ModelCfg) -> str | None:
    """The registered activation the model swaps in, or None for families that bring their own."""
    value = getattr(cfg, "activation", None)
    return None if value is None else str(value)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
