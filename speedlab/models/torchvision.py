"""The `torchvision` family: any torchvision classification model by name (`model.torchvision_name`), built with
the data's number of classes and no weight download. torchvision's models take 3-channel images."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from torch import nn

from speedlab.config import ModelCfg
from speedlab.data.spec import DataSpec
from speedlab.errors import SpeedlabError
from speedlab.models import register
from speedlab.models.init import require_image_input

# Models whose training-mode forward also returns auxiliary classifier outputs unless told not to: the trainer
# expects one logits tensor.
_AUX_LOGITS = ("googlenet", "inception_v3")


@dataclass
class TorchvisionCfg(ModelCfg):
    name: str = "torchvision"
    torchvision_name: str = "resnet18"  # any of torchvision.models.list_models(module=torchvision.models)


def classification_models() -> list[str]:
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


@register("torchvision", TorchvisionCfg)
class TorchvisionFamily:
    def check(self, cfg: TorchvisionCfg, spec: DataSpec) -> None:
        valid = classification_models()
        if cfg.torchvision_name not in valid:
            close = difflib.get_close_matches(cfg.torchvision_name, valid, n=5, cutoff=0.6)
            hint = f"close matches: {', '.join(close)}" if close else f"valid names: {', '.join(valid)}"
            raise SpeedlabError(
                f"model.torchvision_name={cfg.torchvision_name!r} is not a torchvision classification model; {hint}"
            )
        require_image_input("torchvision", spec, channels=3)

    def build(self, cfg: TorchvisionCfg, spec: DataSpec) -> nn.Module:
        import torchvision

        extra = {"aux_logits": False, "init_weights": True} if cfg.torchvision_name in _AUX_LOGITS else {}
        return torchvision.models.get_model(cfg.torchvision_name, weights=None, num_classes=spec.num_outputs, **extra)

    def label(self, cfg: TorchvisionCfg) -> str:
        return f"torchvision {cfg.torchvision_name}"
