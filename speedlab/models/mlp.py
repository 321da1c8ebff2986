"""The `mlp` family: a multilayer perceptron, Linear -> activation for each hidden width, then a Linear output.

Image inputs are flattened, so it takes any data. The reference's small-network workload is a 4-32-16-4 MLP with
tanh fitting 2x2 matrix exponentials (`+exp=mlp_matexp`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

import activations
from speedlab.config import ActivationName, InitName, ModelCfg, require
from speedlab.data.spec import DataSpec
from speedlab.models import register
from speedlab.models.init import initialise


@dataclass
class MLPCfg(ModelCfg):
    name: str = "mlp"
    widths: list[int] = field(default_factory=lambda: [32, 16])  # hidden layers; inputs and outputs come from data
    activation: ActivationName = ActivationName.tanh  # a registered activation (activations/) between the layers
    init: InitName = InitName.torch_default  # weight initialisation: torch_default | kaiming | trunc_normal

    def __post_init__(self) -> None:
        require(all(w >= 1 for w in self.widths), "model.widths", self.widths, "every hidden width must be >= 1")


def mlp(features: int, widths: list[int], outputs: int, activation: str) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    for fan_in, fan_out in zip([features, *widths], widths, strict=False):
        layers += [nn.Linear(fan_in, fan_out), activations.create(activation)]
    layers.append(nn.Linear(widths[-1] if widths else features, outputs))
    return nn.Sequential(*layers)


@register("mlp", MLPCfg)
class MLPFamily:
    def check(self, cfg: MLPCfg, spec: DataSpec) -> None:
        pass  # any data: inputs are flattened

    def build(self, cfg: MLPCfg, spec: DataSpec) -> nn.Module:
        model = mlp(spec.features, cfg.widths, spec.num_outputs, str(cfg.activation))
        initialise(model, str(cfg.init), str(cfg.activation))
        return model
