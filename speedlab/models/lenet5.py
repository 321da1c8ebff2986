"""The `lenet5` family: the classic LeNet5 (LeCun et al., 1998) as the reference's MNIST workload has it.

conv 5x5 -> 6 channels, activation, 2x2 max pool, conv 5x5 -> 16, activation, 2x2 max pool, then Linear 120,
activation, Linear 84, activation, Linear to the outputs. On 28x28 MNIST without padding the features are 16x4x4;
`model.padding=2` gives the paper's 32x32 geometry (16x5x5). The activation is any registered one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import activations
from speedlab.config import ActivationName, Choice, InitName, ModelCfg, at_least
from speedlab.data.spec import DataSpec
from speedlab.models import register
from speedlab.models.init import initialise, require_image_input

KERNEL = 5


class ConvImpl(Choice):
    native = "native"
    unfold = "unfold"


@dataclass
class LeNet5Cfg(ModelCfg):
    name: str = "lenet5"
    activation: ActivationName = ActivationName.relu  # a registered activation (activations/) after each layer
    init: InitName = InitName.torch_default  # weight initialisation: torch_default | kaiming | trunc_normal
    padding: int = 0  # of the first convolution
    # How the convolutions compute: native (torch's, oneDNN on a CPU) or unfold (im2col with F.unfold, then one
    # matmul: what Inductor can fuse into a compiled step). Same parameters either way: checkpoints load in both.
    conv: ConvImpl = ConvImpl.native

    def __post_init__(self) -> None:
        at_least("model.padding", self.padding, 0)


class UnfoldConv2d(nn.Conv2d):
    """nn.Conv2d (same parameters and state-dict keys) computed as F.unfold (im2col) and one matmul; stride 1, no
    dilation or groups, as LeNet5's convolutions are."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        k, p = self.kernel_size, self.padding
        cols = F.unfold(x, k, padding=p)  # N x (C k k) x L
        out = self.weight.flatten(1) @ cols + self.bias[:, None]  # N x C_out x L
        return out.view(n, self.out_channels, h + 2 * p[0] - k[0] + 1, w + 2 * p[1] - k[1] + 1)


def feature_size(size: int, padding: int) -> int:
    """Height (or width) of the last pooled feature map for an input of `size` pixels."""
    return ((size + 2 * padding - KERNEL + 1) // 2 - KERNEL + 1) // 2


class LeNet5(nn.Module):
    def __init__(self, in_shape: tuple[int, int, int], outputs: int, activation: str, padding: int,
                 conv: str = "native") -> None:  # fmt: skip
        super().__init__()
        channels, height, width = in_shape
        conv2d = UnfoldConv2d if conv == "unfold" else nn.Conv2d

        def act() -> nn.Module:
            return activations.create(activation)

        self.features = nn.Sequential(
            conv2d(channels, 6, KERNEL, padding=padding), act(), nn.MaxPool2d(2),
            conv2d(6, 16, KERNEL), act(), nn.MaxPool2d(2),
        )  # fmt: skip
        flat = 16 * feature_size(height, padding) * feature_size(width, padding)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, 120), act(), nn.Linear(120, 84), act(), nn.Linear(84, outputs)
        )

    def forward(self, x):
        return self.classifier(self.features(x))


@register("lenet5", LeNet5Cfg)
class LeNet5Family:
    def check(self, cfg: LeNet5Cfg, spec: DataSpec) -> None:
        # Smallest input whose second pooled map keeps one pixel.
        require_image_input("lenet5", spec, min_size=16 - 2 * cfg.padding)

    def label(self, cfg: LeNet5Cfg) -> str | None:
        """The activation when it is not relu, and the unfold convolutions, for the summary's Changes column."""
        parts = [str(cfg.activation)] if str(cfg.activation) != ActivationName.relu else []
        parts += ["unfold convs"] if cfg.conv == ConvImpl.unfold else []
        return " + ".join(parts) or None

    def build(self, cfg: LeNet5Cfg, spec: DataSpec) -> nn.Module:
        model = LeNet5(spec.input_shape, spec.num_outputs, str(cfg.activation), cfg.padding, str(cfg.conv))
        initialise(model, str(cfg.init), str(cfg.activation))
        return model
