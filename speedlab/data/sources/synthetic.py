"""The `synthetic` source: TinyImageNet-shaped images (200 classes, 64 px RGB by default) generated in memory from
a seed: class-dependent patterns plus noise, learnable within one short epoch. No files, no download."""

from __future__ import annotations

from dataclasses import dataclass

from speedlab.config import ConfigError, ImagePipelineCfg, at_least
from speedlab.data import images, patterns
from speedlab.data.loaders import DataBundle, LoadOptions
from speedlab.data.sources import register
from speedlab.data.sources.tinyimagenet import IMAGENET_MEAN, IMAGENET_STD
from speedlab.data.spec import DataSpec

CHANNELS = 3


@dataclass
class SyntheticCfg(ImagePipelineCfg):
    name: str = "synthetic"
    train_size: int | None = 20_000  # images per split (required here)
    val_size: int | None = 2_000  # images in the val split
    num_classes: int = 200  # classes, each its own pattern
    synthetic_seed: int = 0  # fixes the classes' patterns, independent of the run's seed

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.train_size is None or self.val_size is None:
            raise ConfigError("data=synthetic needs data.train_size and data.val_size (numbers of images, >= 1)")
        at_least("data.num_classes", self.num_classes, 1)


@register("synthetic", SyntheticCfg)
class Synthetic:
    def spec(self, cfg: SyntheticCfg) -> DataSpec:
        return images.spec(cfg, CHANNELS, cfg.num_classes, IMAGENET_MEAN, IMAGENET_STD)

    def load(self, cfg: SyntheticCfg, options: LoadOptions) -> DataBundle:
        spec = self.spec(cfg)
        arrays = {
            split: patterns.generate(n, cfg.num_classes, cfg.image_size, dataset_seed=cfg.synthetic_seed, split=split)
            for split, n in (("train", cfg.train_size), ("val", cfg.val_size))
        }
        return images.load_arrays(cfg, spec, arrays, options, [f"class_{i:03d}" for i in range(cfg.num_classes)])
