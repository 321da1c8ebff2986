"""The `synthetic` source: TinyImageNet-shaped images (200 classes, 64 px RGB by default) generated in memory from
a seed: class-dependent patterns plus noise, learnable within one short epoch. No files, no download."""

from __future__ import annotations

from dataclasses import dataclass

from speedlab.config import ImagePipelineCfg
from speedlab.data import images, patterns
from speedlab.data.loaders import DataBundle, LoadOptions
from speedlab.data.sources import register
from speedlab.data.sources.tinyimagenet import IMAGENET_MEAN, IMAGENET_STD
from speedlab.data.spec import DataSpec
from speedlab.errors import DataError

CHANNELS = 3


@dataclass
class SyntheticCfg(ImagePipelineCfg):
    name: str = "synthetic"
    train_size: int | None = 20_000  # images per split (required here)
    val_size: int | None = 2_000  # images in the val split
    num_classes: int = 200  # classes, each its own pattern
    synthetic_seed: int = 0  # fixes the classes' patterns, independent of the run's seed


@register("synthetic", SyntheticCfg)
class Synthetic:
    def spec(self, cfg: SyntheticCfg) -> DataSpec:
        images.check(cfg)
        if cfg.train_size is None or cfg.val_size is None or min(cfg.train_size, cfg.val_size) < 1:
            raise DataError("data=synthetic needs data.train_size and data.val_size (numbers of images, >= 1)")
        if cfg.num_classes < 1:
            raise DataError(f"data.num_classes={cfg.num_classes}: must be >= 1")
        return images.spec(cfg, CHANNELS, cfg.num_classes, IMAGENET_MEAN, IMAGENET_STD)

    def load(self, cfg: SyntheticCfg, options: LoadOptions) -> DataBundle:
        spec = self.spec(cfg)
        arrays = {
            split: patterns.generate(n, cfg.num_classes, cfg.image_size, dataset_seed=cfg.synthetic_seed, split=split)
            for split, n in (("train", cfg.train_size), ("val", cfg.val_size))
        }
        return images.load_arrays(cfg, spec, arrays, options, [f"class_{i:03d}" for i in range(cfg.num_classes)])
