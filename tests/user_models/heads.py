"""A user's model whose forward returns a dict (logits and an auxiliary reconstruction), and the loss that reads
it. Nothing from speedlab."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TwoHeads(nn.Module):
    """An MLP trunk on feature vectors with a class head and a head that reconstructs the input."""

    def __init__(self, features: int = 8, classes: int = 3, width: int = 32) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(features, width), nn.ReLU())
        self.classify = nn.Linear(width, classes)
        self.reconstruct = nn.Linear(width, features)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.trunk(x)
        return {"logits": self.classify(h), "recon": self.reconstruct(h)}


def two_head_loss(outputs: dict[str, torch.Tensor], targets: torch.Tensor, recon_weight: float = 0.0) -> torch.Tensor:
    """Cross-entropy on the logits, plus (optionally) a small penalty on the reconstruction head's magnitude."""
    return F.cross_entropy(outputs["logits"], targets) + recon_weight * outputs["recon"].pow(2).mean()


def blobs(train: int = 600, val: int = 150, features: int = 8, classes: int = 3):
    """(train, val) lists of (feature vector, class id): Gaussian blobs around a centre per class."""
    g = torch.Generator().manual_seed(0)
    centres = 2.0 * torch.randn(classes, features, generator=g)

    def split(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        labels = torch.randint(0, classes, (n,), generator=g)
        x = centres[labels] + torch.randn(n, features, generator=g)
        return list(zip(x, labels, strict=True))

    return split(train), split(val)
