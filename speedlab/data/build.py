"""Build the train and val loaders a config asks for: the one entry point the rest of speedlab uses for data.

All checks that can fail (missing root, bad layout, corrupt files in a cache) run before the first batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speedlab.config import DataCfg
from speedlab.data import cache, sources, synthetic
from speedlab.data.loaders import BatchPlan, ClassicLoader, DeviceLoader, ImageDataset
from speedlab.data.transforms import DeviceBatchTransform, classic_transform
from speedlab.errors import DataError

Loader = DeviceLoader | ClassicLoader


@dataclass
class DataBundle:
    train: Loader
    val: Loader
    num_classes: int
    classes: list[str]
    info: dict[str, Any] = field(default_factory=dict)  # for result.json

    def record(self) -> dict[str, Any]:
        """What result.json says about the data, including corrupt images skipped so far."""
        return {
            **self.info,
            "skipped_corrupt": self.train.skipped_corrupt
            + self.val.skipped_corrupt
            + self.info.get("skipped_in_cache", 0),
        }


def cache_dir_for(cfg: DataCfg, dataset: sources.FileDataset) -> Path:
    return Path(cfg.cache_dir).expanduser() if cfg.cache_dir else dataset.base.parent / "speedlab_cache"


def _open_files(cfg: DataCfg) -> sources.FileDataset:
    dataset = sources.tinyimagenet(cfg.root) if cfg.name == "tinyimagenet" else sources.imagefolder(cfg.root)
    return sources.FileDataset(
        dataset.name,
        dataset.base,
        dataset.classes,
        dataset.train.subset(cfg.train_size),
        dataset.val.subset(cfg.val_size),
    )


def _synthetic_arrays(cfg: DataCfg) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if cfg.train_size is None or cfg.val_size is None:
        raise DataError("data=synthetic needs data.train_size and data.val_size (numbers of images)")
    return {
        split: synthetic.generate(n, cfg.num_classes, cfg.image_size, dataset_seed=cfg.synthetic_seed, split=split)
        for split, n in (("train", cfg.train_size), ("val", cfg.val_size))
    }


def decoded_arrays(
    cfg: DataCfg, dataset: sources.FileDataset | None = None
) -> tuple[dict[str, cache.DecodedSplit], list[str], dict]:
    """The decoded cache of both splits of a file dataset (built when missing or stale); `dataset` is its index
    when the caller already has it."""
    dataset = dataset or _open_files(cfg)
    cache_dir = cache_dir_for(cfg, dataset)
    decoded = {
        split: cache.load_or_build(
            getattr(dataset, split),
            stem=f"{dataset.name}-{split}-{cfg.image_size}px",
            cache_dir=cache_dir,
            image_size=cfg.image_size,
            skip_corrupt=cfg.skip_corrupt,
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
    return decoded, dataset.classes, info


def build_data(
    cfg: DataCfg,
    *,
    seed: int,
    batch_size: int,
    device: torch.device | str = "cpu",
    eval_batch_size: int | None = None,
    rank: int = 0,
    world: int = 1,
) -> DataBundle:
    """Train and val loaders for `cfg` on `device`; rank/world shard both splits for distributed training."""
    device = torch.device(device)
    eval_batch_size = eval_batch_size or batch_size

    def plan(num_samples: int, train: bool) -> BatchPlan:
        return BatchPlan(
            num_samples, batch_size if train else eval_batch_size, seed=seed, shuffle=train, drop_last=train,
            rank=rank, world=world,
        )  # fmt: skip

    info: dict[str, Any] = {"name": str(cfg.name), "pipeline": str(cfg.pipeline), "resolution": cfg.resolution}

    if cfg.name == "synthetic":
        arrays = _synthetic_arrays(cfg)
        classes = [f"class_{i:03d}" for i in range(cfg.num_classes)]
        files = None
    else:
        files = _open_files(cfg)
        classes = files.classes
        arrays = None

    if cfg.pipeline == "device":
        if arrays is None:
            decoded, classes, cache_info = decoded_arrays(cfg, files)
            info.update(cache_info)
            arrays = {split: (d.images, d.labels) for split, d in decoded.items()}

        def loader(split: str, train: bool) -> DeviceLoader:
            images, labels = arrays[split]
            transform = DeviceBatchTransform(cfg.resolution, train=train, augment=cfg.augment)
            return DeviceLoader(images, labels, plan=plan(len(labels), train), transform=transform, device=device)
    else:

        def loader(split: str, train: bool) -> ClassicLoader:
            source = arrays[split] if arrays is not None else getattr(files, split)
            dataset = ImageDataset(
                source,
                cfg.image_size,
                classic_transform(cfg.resolution, train=train, augment=cfg.augment),
                cfg.skip_corrupt,
            )
            return ClassicLoader(
                dataset,
                plan=plan(len(dataset), train),
                device=device,
                workers=cfg.workers,
                pin_memory=cfg.pin_memory,
                prefetch_factor=cfg.prefetch_factor,
            )

    train, val = loader("train", True), loader("val", False)
    info.update(
        train_images=train.plan.num_samples,
        val_images=val.plan.num_samples,
        num_classes=len(classes),
    )
    return DataBundle(train=train, val=val, num_classes=len(classes), classes=classes, info=info)
