"""The `digits` source: scikit-learn's bundled handwritten digits (1,797 grey images of 8 x 8 pixels, 10 classes,
from the UCI optical recognition set): a real data set that needs no download.

It has no official split, so a fixed permutation (`data.split_seed`) puts `data.val_fraction` of it in val. Pixels
(0-16) are scaled to 0-255 and, by default, shown to the model at 28 x 28 (`data.resolution`), which LeNet5's two
5x5 convolutions need; `data.resolution=8` gives the original grid (e.g. for an MLP).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import numpy as np

from speedlab.config import ImageDataCfg, require
from speedlab.data import images, resident
from speedlab.data.loaders import DataBundle, LoadOptions
from speedlab.data.sources import register
from speedlab.data.spec import DataSpec
from speedlab.errors import SpeedlabError

CLASSES = 10


@dataclass
class DigitsCfg(ImageDataCfg):
    name: str = "digits"
    resolution: int = 28
    augment: bool = False
    crop_scale: list[float] = field(default_factory=lambda: [0.85, 1.0])
    flip: bool = False
    val_fraction: float = 0.2  # share of the 1,797 digits put in val
    split_seed: int = 0  # fixes which images are val, independent of the run's seed

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0 < self.val_fraction < 1, "data.val_fraction", self.val_fraction, "must be between 0 and 1")


@cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 images as uint8 N x 1 x 8 x 8 (0-255) and their labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SpeedlabError(
            "data=digits needs scikit-learn (pip install scikit-learn; it is in requirements.txt)"
        ) from None
    digits = load_digits()
    pixels = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    return pixels, digits.target.astype(np.int64)


def split(cfg: DigitsCfg) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    pixels, labels = _digits()
    order = np.random.default_rng(cfg.split_seed).permutation(len(labels))
    n_val = round(cfg.val_fraction * len(labels))
    parts = {"train": np.sort(order[n_val:]), "val": np.sort(order[:n_val])}
    limits = {"train": cfg.train_size, "val": cfg.val_size}
    return {s: (pixels[i[: limits[s]]], labels[i[: limits[s]]]) for s, i in parts.items()}


def statistics(pixels: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of pixels in [0, 1]: the normalisation the split's images get."""
    values = pixels.astype(np.float64) / 255.0
    return float(values.mean()), float(values.std())


@register("digits", DigitsCfg)
class Digits:
    def spec(self, cfg: DigitsCfg) -> DataSpec:
        mean, std = statistics(split(cfg)["train"][0])
        return images.spec(cfg, 1, CLASSES, (mean,), (std,))

    def load(self, cfg: DigitsCfg, options: LoadOptions) -> DataBundle:
        spec = self.spec(cfg)
        info = {"source": "sklearn.datasets.load_digits", "split_seed": cfg.split_seed}
        return resident.load_images(cfg, spec, split(cfg), options, info, classes=[str(i) for i in range(CLASSES)])
