"""The `custom` family: the user's own `nn.Module`, by import path, with no file inside speedlab.

    python -m speedlab train model=custom model.target=mypkg.nets.TinyNet 'model.kwargs={classes: 10, width: 16}'

`model.target` names a class or factory as Hydra's `_target_` does (`PKG.MODULE.ATTR`; `PKG.MODULE:ATTR` works
too), importable from the user's environment: an installed package, or the current directory and `PYTHONPATH`.
It is called with `model.kwargs` and must return an `nn.Module` taking the data's batches. The config (and so every
checkpoint and result.json) records the target and kwargs, which is how bench and export given a trained run
rebuild the same model.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from torch import nn

from speedlab.config import ModelCfg
from speedlab.data.spec import DataSpec
from speedlab.errors import SpeedlabError
from speedlab.models import register


@dataclass
class CustomCfg(ModelCfg):
    name: str = "custom"
    target: str = ""  # the nn.Module class or factory to call: PKG.MODULE.ATTR (or PKG.MODULE:ATTR)
    # Its keyword arguments, e.g. {classes: 10, width: 16}. Open to new keys (Hydra closes every other node), so
    # `model.kwargs.width=16` works as well as `'model.kwargs={width: 16}'`.
    kwargs: Any = field(default_factory=lambda: OmegaConf.create({}, flags={"struct": False}))


def resolve(target: str) -> Callable[..., Any]:
    """The object `target` names, imported; one error naming the module and Python's reason when it cannot be."""
    if not target:
        raise SpeedlabError("model=custom needs model.target=PKG.MODULE.ATTR: the nn.Module class or factory to call")
    module_name, sep, attr = target.partition(":") if ":" in target else target.rpartition(".")
    if not module_name or not attr:
        raise SpeedlabError(f"model.target={target!r}: give PKG.MODULE.ATTR (or PKG.MODULE:ATTR)")
    # `python -m` puts the current directory first on sys.path; a console script does not: add it, as Hydra does.
    if str(Path.cwd()) not in sys.path and "" not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # noqa: BLE001 - any error in the user's module is reported, not raised deep inside
        raise SpeedlabError(f"model.target={target!r}: cannot import {module_name!r}: "
                            f"{type(err).__name__}: {err}") from None  # fmt: skip
    try:
        obj = getattr(module, attr)
    except AttributeError:
        names = ", ".join(n for n in dir(module) if not n.startswith("_"))
        raise SpeedlabError(f"model.target={target!r}: module {module_name!r} has no {attr!r}; "
                            f"it has: {names}") from None  # fmt: skip
    if not callable(obj):
        raise SpeedlabError(f"model.target={target!r} is a {type(obj).__name__}, not an nn.Module class or a factory")
    return obj


@register("custom", CustomCfg)
class CustomFamily:
    def check(self, cfg: CustomCfg, spec: DataSpec) -> None:
        resolve(cfg.target)

    def build(self, cfg: CustomCfg, spec: DataSpec) -> nn.Module:
        factory = resolve(cfg.target)
        try:
            model = factory(**dict(cfg.kwargs))
        except TypeError as err:  # the callable rejects the kwargs: its own message says which
            raise SpeedlabError(f"model.target={cfg.target!r} with model.kwargs={dict(cfg.kwargs)}: {err}") from None
        if not isinstance(model, nn.Module):
            raise SpeedlabError(f"model.target={cfg.target!r} returned a {type(model).__name__}, not an nn.Module")
        return model

    def label(self, cfg: CustomCfg) -> str:
        return f"custom {cfg.target.replace(':', '.').rsplit('.', 1)[-1]}"
