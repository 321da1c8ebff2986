"""A user's token models: an embedding over int64 ids, as a sequence classifier and as a per-token tagger, and a data
set of token sequences whose class shows in which ids they use. Nothing from speedlab."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset


class BagOfTokens(nn.Module):
    """Embedding, mean over positions, a linear head: one class per sequence."""

    def __init__(self, vocab: int = 64, dim: int = 16, classes: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(ids).mean(dim=1))


class Tagger(nn.Module):
    """Embedding, a 1-D convolution over positions, one class per token: logits are batch x classes x length."""

    def __init__(self, vocab: int = 64, dim: int = 16, classes: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.mix = nn.Conv1d(dim, dim, 3, padding=1)
        self.head = nn.Conv1d(dim, classes, 1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.embed(ids).transpose(1, 2)
        return self.head(torch.relu(self.mix(h)) + h)


class Sequences(Dataset):
    """Sequences of `length` int64 ids; class c draws most ids from its own quarter of the vocabulary. With
    `per_token`, each token's label is the quarter its id falls in."""

    def __init__(self, n: int, vocab: int, length: int, classes: int, seed: int, per_token: bool) -> None:
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, classes, (n,), generator=g)
        band = vocab // classes
        own = self.labels[:, None] * band + torch.randint(0, band, (n, length), generator=g)
        noise = torch.randint(0, vocab, (n, length), generator=g)
        self.ids = torch.where(torch.rand(n, length, generator=g) < 0.7, own, noise)
        self.per_token, self.band = per_token, band

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        ids = self.ids[i]
        return ids, (ids // self.band) if self.per_token else self.labels[i]


def sequences(train: int = 512, val: int = 128, vocab: int = 64, length: int = 24, classes: int = 4,
              per_token: bool = False):  # fmt: skip
    """(train, val) datasets of (int64 ids of `length`, class id or per-token class ids)."""
    return (Sequences(train, vocab, length, classes, 0, per_token),
            Sequences(val, vocab, length, classes, 1, per_token))  # fmt: skip
