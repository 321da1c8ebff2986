"""Build the model a `ModelCfg` asks for: speedlab's ConvNeXt (any registered activation) or a timm model."""

from __future__ import annotations

from functools import partial

from torch import nn

import activations
from speedlab.config import ModelCfg
from speedlab.errors import SpeedlabError
from speedlab.models import timm_adapter
from speedlab.models.convnext import ConvNeXt
from speedlab.models.init import initialise

# timm models bring their own activation and initialisation; these are the schema defaults that leave them alone.
_TIMM_KEEPS = {"activation": "gelu", "init": "trunc_normal"}


def validate(cfg: ModelCfg) -> None:
    """Every check `build_model` makes that needs no data: run before any long work."""
    if cfg.name == "timm":
        for key, default in _TIMM_KEEPS.items():
            if str(getattr(cfg, key)) != default:
                raise SpeedlabError(
                    f"model.{key}={getattr(cfg, key)} applies to model.name=convnext only; timm models keep their "
                    f"own {key} (leave model.{key} at {default})"
                )
        timm_adapter.check_name(cfg.timm_name)
    elif not cfg.depths or len(cfg.depths) != len(cfg.dims) or min(cfg.depths + cfg.dims) < 1:
        raise SpeedlabError(
            f"model.depths={cfg.depths} and model.dims={cfg.dims}: need equally many stages, all numbers >= 1"
        )


def build_model(cfg: ModelCfg, num_classes: int) -> nn.Module:
    """A freshly initialised model on the CPU (the trainer moves it); initialisation draws from torch's global RNG."""
    if num_classes < 1:
        raise SpeedlabError(f"num_classes must be >= 1, got {num_classes}")
    validate(cfg)
    if cfg.name == "timm":
        return timm_adapter.create(cfg.timm_name, num_classes)
    model = ConvNeXt(
        num_classes,
        act=partial(activations.create, str(cfg.activation)),
        depths=cfg.depths,
        dims=cfg.dims,
        drop_path=cfg.drop_path,
        layer_scale_init=cfg.layer_scale_init,
    )
    initialise(model, str(cfg.init), str(cfg.activation))
    return model


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
