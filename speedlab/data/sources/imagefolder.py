"""The `imagefolder` source: a dataset you bring, in the ImageFolder layout (`<root>/train/<class>/*` and
`<root>/val/<class>/*`); classes come from train/, sorted. RGB by default; `data.channels=1` reads grey images, with
`data.mean` / `data.std` (one value per channel) for their normalisation."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from speedlab.config import ConfigError
from speedlab.data import images
from speedlab.data.decode import MODES
from speedlab.data.files import FileDataset, FileSplit, images_in
from speedlab.data.loaders import DataBundle, LoadOptions
from speedlab.data.sources import register
from speedlab.data.sources.tinyimagenet import IMAGENET_MEAN, IMAGENET_STD
from speedlab.data.spec import DataSpec
from speedlab.errors import DataError


@dataclass
class ImageFolderCfg(images.ImageFilesCfg):
    name: str = "imagefolder"
    channels: int = 3  # 3: RGB, 1: grey
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))  # per channel, of pixels in [0, 1]
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))  # per channel, of pixels in [0, 1]

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.channels not in MODES:
            raise ConfigError(f"data.channels={self.channels}: valid values are {', '.join(map(str, MODES))}")
        if len(self.mean) != self.channels or len(self.std) != self.channels or min(self.std) <= 0:
            raise ConfigError(
                f"data.mean={self.mean} and data.std={self.std}: give {self.channels} value(s) each (one per "
                "channel), std > 0"
            )


def classes_of(root: str | Path) -> tuple[Path, list[str]]:
    base = Path(root).expanduser().resolve()
    if not (base / "train").is_dir():
        raise DataError(
            f"ImageFolder dataset not found: {base / 'train'} does not exist. Expected <root>/train/<class>/*.jpg "
            "and <root>/val/<class>/*.jpg; set data.root to that folder."
        )
    classes = sorted(e.name for e in os.scandir(base / "train") if e.is_dir())
    if not classes:
        raise DataError(f"no class folders in {base / 'train'}")
    return base, classes


def index(root: str | Path) -> FileDataset:
    base, classes = classes_of(root)

    def split(name: str) -> FileSplit:
        files: list[str] = []
        labels: list[int] = []
        if not (base / name).is_dir():
            raise DataError(f"ImageFolder dataset is incomplete: {base / name} does not exist")
        unknown = sorted({e.name for e in os.scandir(base / name) if e.is_dir()} - set(classes))
        if unknown:
            raise DataError(f"{base / name} has class folders missing from train/: {', '.join(unknown)}")
        for label, cls in enumerate(classes):
            folder = base / name / cls
            names = images_in(folder) if folder.is_dir() else []
            files += [f"{name}/{cls}/{n}" for n in names]
            labels += [label] * len(names)
        return FileSplit(base, files, np.asarray(labels, dtype=np.int64))

    return FileDataset("imagefolder", base, classes, split("train"), split("val"))


@register("imagefolder", ImageFolderCfg)
class ImageFolder:
    def spec(self, cfg: ImageFolderCfg) -> DataSpec:
        return images.spec(cfg, cfg.channels, len(classes_of(cfg.root)[1]), cfg.mean, cfg.std)

    def load(self, cfg: ImageFolderCfg, options: LoadOptions) -> DataBundle:
        spec = self.spec(cfg)
        return images.load_files(cfg, spec, images.subset(index(cfg.root), cfg), options)

    def prepare(self, cfg: ImageFolderCfg) -> dict[str, Any]:
        decoded, info = images.decoded_arrays(cfg, images.subset(index(cfg.root), cfg), cfg.channels)
        return {**info, "splits": {s: {"images": len(d.labels), "skipped": len(d.skipped), "built": d.built,
                                       "path": str(d.path)} for s, d in decoded.items()}}  # fmt: skip
