"""The image pipelines, shared by the sources whose images are uint8 arrays or files (tinyimagenet, imagefolder,
synthetic): both loaders of a split, the decoded cache of file datasets, and the checks of the keys they share.

`data.feed=device` slices uint8 batches out of arrays (the memory-mapped decoded cache, or generated arrays) and
transforms them batched on the device; `data.feed=loader` decodes and transforms per image in DataLoader
workers. Both take the source's normalisation from its `DataSpec` and the crop range from `data.crop_scale`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from speedlab.config import ImageDataCfg, ImagePipelineCfg
from speedlab.data import cache
from speedlab.data.files import FileDataset
from speedlab.data.loaders import ClassicLoader, DataBundle, DeviceLoader, ImageDataset, LoadOptions
from speedlab.data.spec import DataSpec
from speedlab.data.transforms import DeviceBatchTransform, Recipe, classic_transform
from speedlab.errors import DataError

Arrays = dict[str, tuple[np.ndarray, np.ndarray]]  # split -> (uint8 N x C x S x S images, int64 labels)


@dataclass
class ImageFilesCfg(ImagePipelineCfg):
    """Keys of the sources that read image files and keep a decoded cache beside them."""

    root: str = "${oc.env:SPEEDLAB_DATA,data}"  # where the dataset is ($SPEEDLAB_DATA, else data/)
    skip_corrupt: bool = False  # skip and count corrupt images instead of failing
    cache_dir: str | None = None  # default: speedlab_cache beside the dataset folder


def image_recipe(cfg: ImageDataCfg, spec: DataSpec) -> Recipe:
    """What the pipelines do to this source's images: its resolution, normalisation and augmentation."""
    channels = spec.input_shape[0]
    mean, std = spec.mean or (0.0,) * channels, spec.std or (1.0,) * channels
    return Recipe(cfg.resolution, tuple(mean), tuple(std), cfg.augment, tuple(cfg.crop_scale), cfg.flip)


def augmentation(cfg: ImageDataCfg) -> dict[str, Any]:
    """What result.json says about the images' size and augmentation."""
    return {"resolution": cfg.resolution, "augment": cfg.augment, "crop_scale": list(cfg.crop_scale), "flip": cfg.flip}


def spec(cfg: ImageDataCfg, channels: int, classes: int, mean: tuple, std: tuple) -> DataSpec:
    return DataSpec("classification", (channels, cfg.resolution, cfg.resolution), classes, tuple(mean), tuple(std))


def cache_dir_for(cfg: ImageFilesCfg, dataset: FileDataset) -> Path:
    return Path(cfg.cache_dir).expanduser() if cfg.cache_dir else dataset.base.parent / "speedlab_cache"


def subset(dataset: FileDataset, cfg: ImagePipelineCfg) -> FileDataset:
    """The dataset cut to `data.train_size` / `data.val_size` images (None: all)."""
    return FileDataset(
        dataset.name, dataset.base, dataset.classes, dataset.train.subset(cfg.train_size),
        dataset.val.subset(cfg.val_size),
    )  # fmt: skip


def decoded_arrays(
    cfg: ImageFilesCfg, dataset: FileDataset, channels: int
) -> tuple[dict[str, cache.DecodedSplit], dict[str, Any]]:
    """The decoded cache of both splits (built when missing or stale), and what result.json says about it."""
    cache_dir = cache_dir_for(cfg, dataset)
    decoded = {
        split: cache.load_or_build(
            getattr(dataset, split),
            stem=f"{dataset.name}-{split}-{cfg.image_size}px-{channels}ch",
            cache_dir=cache_dir,
            image_size=cfg.image_size,
            skip_corrupt=cfg.skip_corrupt,
            channels=channels,
            workers=max(1, cfg.workers),
        )
        for split in ("train", "val")
    }
    info = {
        "root": str(dataset.base),
        "cache_dir": str(cache_dir),
        "cache": {
            split: {
                "path": str(d.path),
                "built": d.built,
                "build_time_s": round(d.build_time_s, 3),
                "rebuild_reason": d.rebuild_reason,
                "skipped": d.skipped,
            }
            for split, d in decoded.items()
        },
        "skipped_in_cache": sum(len(d.skipped) for d in decoded.values()),
    }
    return decoded, info


def load_arrays(
    cfg: ImagePipelineCfg, spec: DataSpec, arrays: Arrays, options: LoadOptions, classes: list[str]
) -> DataBundle:
    """Both loaders over in-memory (or memory-mapped) uint8 arrays, in the configured pipeline."""
    return _bundle(cfg, spec, options, {}, arrays=arrays, files=None, classes=classes)


def load_files(cfg: ImageFilesCfg, spec: DataSpec, dataset: FileDataset, options: LoadOptions) -> DataBundle:
    """Both loaders over a file dataset: from its decoded cache (device pipeline) or its files (classic)."""
    info: dict[str, Any] = {"root": str(dataset.base)}
    if str(cfg.feed) == "device":
        decoded, cache_info = decoded_arrays(cfg, dataset, spec.input_shape[0])
        info.update(cache_info)
        arrays = {split: (d.images, d.labels) for split, d in decoded.items()}
        return _bundle(cfg, spec, options, info, arrays=arrays, files=None, classes=dataset.classes)
    return _bundle(cfg, spec, options, info, arrays=None, files=dataset, classes=dataset.classes)


def _bundle(
    cfg: ImagePipelineCfg, spec: DataSpec, options: LoadOptions, info: dict, *, arrays: Arrays | None,
    files: FileDataset | None, classes: list[str] | None = None,
) -> DataBundle:  # fmt: skip
    recipe = image_recipe(cfg, spec)

    def loader(split: str, train: bool) -> DeviceLoader | ClassicLoader:
        if str(cfg.feed) == "device":
            if arrays is None:
                raise DataError("the device pipeline needs decoded arrays")
            images, labels = arrays[split]
            transform = DeviceBatchTransform(recipe, train=train)
            return DeviceLoader(
                images, labels, plan=options.plan(len(labels), train), transform=transform, device=options.device
            )
        source = arrays[split] if arrays is not None else getattr(files, split)
        transform = classic_transform(recipe, train=train)
        skip = getattr(cfg, "skip_corrupt", False)  # files only: arrays have no corrupt images
        dataset = ImageDataset(source, cfg.image_size, transform, skip, channels=spec.input_shape[0])
        return ClassicLoader(
            dataset, plan=options.plan(len(dataset), train), device=options.device, workers=cfg.workers,
            pin_memory=cfg.pin_memory, prefetch_factor=cfg.prefetch_factor,
        )  # fmt: skip

    info = {**info, "feed": str(cfg.feed), **augmentation(cfg)}
    return DataBundle(loader("train", True), loader("val", False), spec, classes, info)
