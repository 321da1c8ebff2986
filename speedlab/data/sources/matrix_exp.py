"""The `matrix_exp` source: the reference's small regression task. Each sample is a random k x k matrix (standard
normal entries, k = `data.matrix_size`, 2 by default) flattened to k^2 features; its target is the matrix
exponential, flattened the same way. Train and val sets of 10,000 each by default, generated from `data.data_seed`
(float64 `torch.linalg.matrix_exp`, then float32), identical for identical settings.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from speedlab.config import ConfigError, DataCfg, at_least
from speedlab.data import resident
from speedlab.data.loaders import DataBundle, LoadOptions
from speedlab.data.sources import register
from speedlab.data.spec import DataSpec

SPLIT_IDS = {"train": 1, "val": 2}


@dataclass
class MatrixExpCfg(DataCfg):
    name: str = "matrix_exp"
    train_size: int | None = 10_000  # matrices in the training split
    val_size: int | None = 10_000  # matrices in the val split
    matrix_size: int = 2  # k: k x k matrices, k^2 features and targets
    data_seed: int = 0  # fixes the matrices, independent of the run's seed

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.train_size is None or self.val_size is None:
            raise ConfigError("data=matrix_exp needs data.train_size and data.val_size (numbers of matrices, >= 1)")
        at_least("data.matrix_size", self.matrix_size, 1)


def generate(n: int, k: int, data_seed: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` random k x k matrices and their exponentials, each flattened to k^2 float32 numbers."""
    g = torch.Generator().manual_seed(1_000_003 * data_seed + 7919 * SPLIT_IDS[split])
    matrices = torch.randn(n, k, k, generator=g, dtype=torch.float64)
    return matrices.reshape(n, k * k).float(), torch.linalg.matrix_exp(matrices).reshape(n, k * k).float()


@register("matrix_exp", MatrixExpCfg)
class MatrixExp:
    def spec(self, cfg: MatrixExpCfg) -> DataSpec:
        features = cfg.matrix_size**2
        return DataSpec("regression", (features,), features)

    def load(self, cfg: MatrixExpCfg, options: LoadOptions) -> DataBundle:
        spec = self.spec(cfg)
        train = generate(cfg.train_size, cfg.matrix_size, cfg.data_seed, "train")
        val = generate(cfg.val_size, cfg.matrix_size, cfg.data_seed, "val")
        info = {"matrix_size": cfg.matrix_size, "data_seed": cfg.data_seed}
        return resident.load_tensors(train, val, spec, options, info, resident=str(cfg.feed) == "device")
