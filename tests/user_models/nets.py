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


class BranchUnderTest(TinyCNN):
    """TinyCNN as a branch might change it: each forward pass waits `SPEEDLAB_TEST_SLOWDOWN_MS` more (read when
    built), the injected regression of the CI recipe's test. The config stays the same as on "main"."""

    def __init__(self, classes: int = 10, width: int = 8, channels: int = 3) -> None:
        super().__init__(classes, width, channels)
        import os

        self.delay_s = float(os.environ.get("SPEEDLAB_TEST_SLOWDOWN_MS", "0")) / 1e3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.delay_s:
            import time

            time.sleep(self.delay_s)
        return super().forward(x)


class DiesWhenCompiled(TinyCNN):
    """TinyCNN whose process dies (no exception, no cleanup: as a segfault in a compiler would) when torch.compile
    traces it: the crashing backend of bench's isolation test. Eager and ONNX export (torch.export) run it like
    TinyCNN."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling() and not torch.compiler.is_exporting():
            import os

            os._exit(139)
        return super().forward(x)
