"""The `timm` family: any timm model by name, with the data's classes and channels and no pretrained download.

timm models keep their own activation and initialisation; `model.timm_name` picks the architecture.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from torch import nn

from speedlab.config import ModelCfg
from speedlab.data.spec import DataSpec
from speedlab.errors import SpeedlabError
from speedlab.models import register
from speedlab.models.init import require_image_input


@dataclass
class TimmCfg(ModelCfg):
    name: str = "timm"
    timm_name: str = "convnext_tiny"  # any name in timm.list_models()


def check_name(name: str) -> None:
    """Fail on a name timm does not know, listing the closest names it does."""
    import timm  # imported here: timm is slow to import and only this family needs it

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        hint = f"close matches: {', '.join(close)}" if close else "see timm.list_models() for the valid names"
        raise SpeedlabError(f"model.timm_name={name!r} is not a timm model; {hint}")


@register("timm", TimmCfg)
class TimmFamily:
    def check(self, cfg: TimmCfg, spec: DataSpec) -> None:
        check_name(cfg.timm_name)
        require_image_input("timm", spec)

    def build(self, cfg: TimmCfg, spec: DataSpec) -> nn.Module:
        import timm

        return timm.create_model(
            cfg.timm_name, pretrained=False, num_classes=spec.num_outputs, in_chans=spec.input_shape[0]
        )

    def label(self, cfg: TimmCfg) -> str:
        return f"timm {cfg.timm_name}"
