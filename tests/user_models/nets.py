"""A user's own small networks, written as a user would, with nothing from speedlab."""

from __future__ import annotations

import torch
from torch import nn


class TinyCNN(nn.Module):
    """Two convolutions, global pooling and a linear head, for C x H x W images."""

    def __init__(self, classes: int = 10, width: int = 8, channels: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.head = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def tiny_cnn(classes: int = 10, width: int = 8) -> nn.Module:
    """A factory, as a user might expose one."""
    return TinyCNN(classes=classes, width=width)


NOT_A_MODEL = 42


def not_a_module() -> str:
    return "a string"
