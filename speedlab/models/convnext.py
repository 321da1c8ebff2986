"""The `convnext` family: ConvNeXt (Liu et al., 2022, "A ConvNet for the 2020s") written for speedlab.

A 4x4 patchify stem, four stages of blocks (depthwise 7x7 conv -> LayerNorm -> pointwise 4x expansion -> activation
-> pointwise projection, with layer scale and stochastic depth), and LayerNorm + 2x2 strided conv between stages.
The activation is any module factory (speedlab passes `activations.create(name)`), so every registered activation
swaps in without touching this file. The model does no compiling, device placement or I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

import activations
from speedlab.config import ActivationName, Choice, ConfigError, InitName, ModelCfg
from speedlab.data.spec import DataSpec
from speedlab.models import register
from speedlab.models.depthwise import DepthwiseConv2d
from speedlab.models.init import initialise, require_image_input


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor (the stem and the downsampling layers)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class DropPath(nn.Module):
    """Stochastic depth: drop a sample's whole residual branch with probability `p` while training."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Block(nn.Module):
    """dwconv 7x7 -> LayerNorm -> Linear(4x) -> activation -> Linear -> layer scale -> drop path, plus the skip.

    The pointwise convs are Linear layers on channels-last activations, as in the paper's reference code.
    """

    def __init__(
        self,
        dim: int,
        act: Callable[[], nn.Module],
        drop_path: float,
        layer_scale_init: float,
        depthwise: type[nn.Conv2d] = nn.Conv2d,
    ) -> None:
        super().__init__()
        self.dwconv = depthwise(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = act()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale_init)) if layer_scale_init > 0 else None
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.dwconv(x).permute(0, 2, 3, 1)  # N, H, W, C
        branch = self.pwconv2(self.act(self.pwconv1(self.norm(branch))))
        if self.gamma is not None:
            branch = branch * self.gamma
        return x + self.drop_path(branch.permute(0, 3, 1, 2))


class ConvNeXt(nn.Module):
    def __init__(
        self,
        num_classes: int,
        act: Callable[[], nn.Module],
        depths: Sequence[int] = (3, 3, 9, 3),
        dims: Sequence[int] = (80, 160, 320, 640),
        drop_path: float = 0.1,
        layer_scale_init: float = 1e-6,
        in_chans: int = 3,
        depthwise: type[nn.Conv2d] = nn.Conv2d,
    ) -> None:
        super().__init__()
        if len(depths) != len(dims) or not depths:
            raise ValueError(f"depths {list(depths)} and dims {list(dims)} must be non-empty and of equal length")
        self.downsample = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(in_chans, dims[0], kernel_size=4, stride=4), LayerNorm2d(dims[0], eps=1e-6))]
        )
        for prev, dim in zip(dims[:-1], dims[1:], strict=True):
            self.downsample.append(
                nn.Sequential(LayerNorm2d(prev, eps=1e-6), nn.Conv2d(prev, dim, kernel_size=2, stride=2))
            )
        # Stochastic depth rises linearly from 0 to `drop_path` over all blocks.
        rates = torch.linspace(0, drop_path, sum(depths)).tolist()
        self.stages = nn.ModuleList()
        for depth, dim in zip(depths, dims, strict=True):
            stage_rates, rates = rates[:depth], rates[depth:]
            self.stages.append(nn.Sequential(*(Block(dim, act, r, layer_scale_init, depthwise) for r in stage_rates)))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for down, stage in zip(self.downsample, self.stages, strict=True):
            x = stage(down(x))
        return self.norm(x.mean(dim=(-2, -1)))  # global average pool, then LayerNorm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


class DepthwiseImpl(Choice):
    torch = "torch"
    fast = "fast"


@dataclass
class ConvNeXtCfg(ModelCfg):
    name: str = "convnext"
    # a registered activation (activations/) between the pointwise layers
    activation: ActivationName = ActivationName.gelu
    init: InitName = InitName.trunc_normal  # weight initialisation: trunc_normal | kaiming | torch_default
    depths: list[int] = field(default_factory=lambda: [3, 3, 7, 3])  # blocks per stage
    dims: list[int] = field(default_factory=lambda: [80, 160, 320, 640])  # 17.8M parameters for 200 classes
    drop_path: float = 0.1  # stochastic depth's largest rate (the last block's)
    layer_scale_init: float = 1e-6  # each block's residual scale at initialisation (0: none)
    # The blocks' depthwise 7x7 convolution: torch's nn.Conv2d, or speedlab's DepthwiseConv2d (same weights), whose
    # backward is a compiled reduction and which stays fp32 under autocast (speedlab/models/depthwise.py).
    depthwise: DepthwiseImpl = DepthwiseImpl.torch

    def __post_init__(self) -> None:
        if not self.depths or len(self.depths) != len(self.dims) or min(self.depths + self.dims) < 1:
            raise ConfigError(
                f"model.depths={self.depths} and model.dims={self.dims}: need equally many stages, all numbers >= 1"
            )


@register("convnext", ConvNeXtCfg)
class ConvNeXtFamily:
    def check(self, cfg: ConvNeXtCfg, spec: DataSpec) -> None:
        # The 4x4 stem and each 2x2 downsampling between stages must leave at least one pixel.
        require_image_input("convnext", spec, min_size=4 * 2 ** (len(cfg.depths) - 1))

    def label(self, cfg: ConvNeXtCfg) -> str | None:
        """The "Changes" column: a swapped activation, and the fast depthwise convolution when chosen."""
        parts = [str(cfg.activation)] if str(cfg.activation) != str(ConvNeXtCfg.activation) else []
        if cfg.depthwise == DepthwiseImpl.fast:
            parts.append("fast depthwise")
        return " + ".join(parts) or None

    def build(self, cfg: ConvNeXtCfg, spec: DataSpec) -> nn.Module:
        model = ConvNeXt(
            spec.num_outputs,
            act=partial(activations.create, str(cfg.activation)),
            depths=cfg.depths,
            dims=cfg.dims,
            drop_path=cfg.drop_path,
            layer_scale_init=cfg.layer_scale_init,
            in_chans=spec.input_shape[0],
            depthwise=DepthwiseConv2d if cfg.depthwise == DepthwiseImpl.fast else nn.Conv2d,
        )
        initialise(model, str(cfg.init), str(cfg.activation))
        return model
