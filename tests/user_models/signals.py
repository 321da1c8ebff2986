"""A user's waveform classifier: a 1-D ConvNet on C x L signals, and a data set of noisy sinusoids whose class is
the frequency. Nothing from speedlab."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.data import TensorDataset


class Wave1d(nn.Module):
    """Two 1-D convolutions over C x L, global average pooling, a linear head."""

    def __init__(self, channels: int = 2, classes: int = 4, width: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(channels, width, 7, padding=3), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(width, width, 5, padding=2), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
        )  # fmt: skip
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _waves(n: int, channels: int, length: int, classes: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    t = torch.arange(length, dtype=torch.float32) / length
    phase = 2 * math.pi * torch.rand(n, channels, 1, generator=g)
    freq = (2 + 3 * labels.float())[:, None, None]
    x = torch.sin(2 * math.pi * freq * t + phase) + 0.3 * torch.randn(n, channels, length, generator=g)
    return TensorDataset(x, labels)


def waveforms(train: int = 512, val: int = 128, channels: int = 2, length: int = 64, classes: int = 4):
    """(train, val) datasets of (C x L float signal, class id): the class is the sinusoid's frequency."""
    return _waves(train, channels, length, classes, 0), _waves(val, channels, length, classes, 1)


class Pairs:
    """A map-style dataset whose items are not (input, target) pairs, as a mistake would make one."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):
        return torch.zeros(3), torch.tensor(0), "extra"


def triples():
    """(train, val) whose items have three parts: speedlab must refuse them clearly."""
    return Pairs(), Pairs()
