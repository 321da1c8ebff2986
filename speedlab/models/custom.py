"""The `custom` family: the user's own `nn.Module`, by import path, with no file inside speedlab.

    python -m speedlab train model=custom model.target=mypkg.nets.TinyNet 'model.kwargs={classes: 10, width: 16}'

`model.target` names a class or factory as Hydra's `_target_` does (`PKG.MODULE.ATTR`; `PKG.MODULE:ATTR` works
too), importable from the user's environment: an installed package, or the current directory and `PYTHONPATH`.
It is called with `model.kwargs` and must return an `nn.Module` taking the data's batches. The config (and so every
checkpoint and result.json) records the target and kwargs, which is how bench and export given a trained run
rebuild the same model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from omegaconf import OmegaConf
from torch import nn

from speedlab import targets
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
    """The class or factory `model.target` names, imported (errors name the module and Python's reason)."""
    if not target:
        raise SpeedlabError("model=custom needs model.target=PKG.MODULE.ATTR: the nn.Module class or factory to call")
    return targets.resolve("model.target", target, "an nn.Module class or a factory")


@register("custom", CustomCfg)
class CustomFamily:
    def check(self, cfg: CustomCfg, spec: DataSpec) -> None:
        resolve(cfg.target)

    def build(self, cfg: CustomCfg, spec: DataSpec) -> nn.Module:
        resolve(cfg.target)
        model = targets.call("model.target", cfg.target, dict(cfg.kwargs), "an nn.Module class or a factory")
        if not isinstance(model, nn.Module):
            raise SpeedlabError(f"model.target={cfg.target!r} returned a {type(model).__name__}, not an nn.Module")
        return model

    def label(self, cfg: CustomCfg) -> str:
        return f"custom {cfg.target.replace(':', '.').rsplit('.', 1)[-1]}"
