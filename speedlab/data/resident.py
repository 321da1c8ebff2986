"""Loaders for the small sources, whose splits live on the device as whole tensors (`TensorLoader`): no
DataLoader and no host work per step. Image splits are normalised (and resized) once when they load; only with
augmentation do they stay uint8 and go through the batched device transform each step. With `data.feed=loader` the
same prepared tensors feed a host DataLoader instead (`HostLoader`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from speedlab.config import ImageDataCfg
from speedlab.data.images import augmentation, image_recipe
from speedlab.data.loaders import DataBundle, HostLoader, LoadOptions, TensorLoader
from speedlab.data.spec import DataSpec
from speedlab.data.transforms import DeviceBatchTransform
from speedlab.errors import DataError

CHUNK = 4096  # images prepared at a time, to bound the float scratch memory


def load_images(
    cfg: ImageDataCfg, spec: DataSpec, arrays: dict[str, tuple[np.ndarray, np.ndarray]], options: LoadOptions,
    info: dict[str, Any], classes: list[str] | None = None,
) -> DataBundle:  # fmt: skip
    """Both splits of uint8 N x C x H x W images with int64 labels, resident on `options.device`."""
    recipe = image_recipe(cfg, spec)
    prepare = DeviceBatchTransform(recipe, train=False)

    def loader(split: str, train: bool) -> TensorLoader | HostLoader:
        images, labels = arrays[split]
        x = torch.from_numpy(np.ascontiguousarray(images)).to(options.device)
        y = torch.from_numpy(np.ascontiguousarray(labels)).to(options.device)
        plan = options.plan(len(y), train)
        if train and cfg.augment:
            if not resident:
                raise DataError(
                    f"data.feed=loader with data.augment=true: the host loader has no augmentation; set "
                    f"data.augment=false or data.feed=device (data={cfg.name})"
                )
            return TensorLoader(x, y, plan=plan, transform=DeviceBatchTransform(recipe, train=True))
        ready = torch.cat([prepare(x[i : i + CHUNK]) for i in range(0, len(x), CHUNK)]) if len(x) else x.float()
        return TensorLoader(ready, y, plan=plan) if resident else HostLoader(ready, y, plan=plan, device=options.device)

    resident = str(cfg.feed) == "device"
    info = {**info, "feed": str(cfg.feed), **augmentation(cfg)}
    return DataBundle(loader("train", True), loader("val", False), spec, classes, info)


def load_tensors(
    train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor], spec: DataSpec,
    options: LoadOptions, info: dict[str, Any], resident: bool = True,
) -> DataBundle:  # fmt: skip
    """Both splits of ready-to-use inputs and targets (features, regression targets), resident on the device (or,
    with `resident=False`, fed from the host by a DataLoader)."""

    def loader(split: tuple[torch.Tensor, torch.Tensor], is_train: bool) -> TensorLoader | HostLoader:
        plan = options.plan(len(split[1]), is_train)
        if not resident:
            return HostLoader(*split, plan=plan, device=options.device)
        x, y = (t.to(options.device) for t in split)
        return TensorLoader(x, y, plan=plan)

    feed = "device" if resident else "loader"
    return DataBundle(loader(train, True), loader(val, False), spec, None, {**info, "feed": feed})
