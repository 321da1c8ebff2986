"""The `tinyimagenet` source: TinyImageNet (200 classes, 64 px RGB) in its official layout, read as it lies on disk.

`data.root` is the folder holding `tiny-imagenet-200/` (what `python -m speedlab data download` makes) or that
dataset folder itself (the one holding `wnids.txt`). Images are decoded once into the decoded cache beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from speedlab.data import images
from speedlab.data.files import FileDataset, FileSplit, images_in
from speedlab.data.loaders import DataBundle, LoadOptions
from speedlab.data.sources import register
from speedlab.data.spec import DataSpec
from speedlab.errors import DataError

DATASET_DIR = "tiny-imagenet-200"
DOWNLOAD_HINT = "python -m speedlab data download"
OFFICIAL_CLASSES = 200
# ImageNet's channel statistics: TinyImageNet is a subset of it (the synthetic stand-in and imagefolder use them too).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CHANNELS = 3


@dataclass
class TinyImageNetCfg(images.ImageFilesCfg):
    name: str = "tinyimagenet"


def dataset_dir(root: str | Path) -> Path:
    """The dataset folder: `root` itself when it holds wnids.txt, else `root/tiny-imagenet-200`."""
    root = Path(root).expanduser().resolve()
    return root if (root / "wnids.txt").is_file() else root / DATASET_DIR


def read_classes(base: Path, root: str | Path) -> list[str]:
    wnids_file = base / "wnids.txt"
    if not wnids_file.is_file():
        raise DataError(
            f"TinyImageNet not found: {wnids_file} does not exist. Fetch it with `{DOWNLOAD_HINT} --root {root}`, "
            f"or point data.root (or $SPEEDLAB_DATA) at the folder that holds {DATASET_DIR}/ (or at {DATASET_DIR}/ "
            "itself)."
        )
    return sorted({w.strip() for w in wnids_file.read_text().split() if w.strip()})


def index(root: str | Path) -> FileDataset:
    """Index the official layout: wnids.txt, train/<wnid>/images/, val/images/ + val/val_annotations.txt."""
    base = dataset_dir(root)
    classes = read_classes(base, root)
    label_of = {wnid: i for i, wnid in enumerate(classes)}

    files: list[str] = []
    labels: list[int] = []
    for wnid in classes:
        folder = base / "train" / wnid / "images"
        if not folder.is_dir():
            raise DataError(f"TinyImageNet is incomplete: {folder} is missing (class {wnid} is listed in wnids.txt)")
        names = images_in(folder)
        files += [f"train/{wnid}/images/{n}" for n in names]
        labels += [label_of[wnid]] * len(names)
    train = FileSplit(base, files, np.asarray(labels, dtype=np.int64))

    annotations = base / "val" / "val_annotations.txt"
    if not annotations.is_file():
        raise DataError(f"TinyImageNet is incomplete: {annotations} is missing")
    val_files: list[str] = []
    val_labels: list[int] = []
    for lineno, line in enumerate(annotations.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in label_of:
            raise DataError(f"{annotations}:{lineno}: expected '<file>\\t<wnid from wnids.txt>...', got {line!r}")
        val_files.append(f"val/images/{fields[0]}")
        val_labels.append(label_of[fields[1]])
    val = FileSplit(base, val_files, np.asarray(val_labels, dtype=np.int64))
    return FileDataset("tinyimagenet", base, classes, train, val)


@register("tinyimagenet", TinyImageNetCfg)
class TinyImageNet:
    def spec(self, cfg: TinyImageNetCfg) -> DataSpec:
        base = dataset_dir(cfg.root)
        # The class list is one small file; without the dataset (bench of a fresh model) the official count holds.
        classes = len(read_classes(base, cfg.root)) if (base / "wnids.txt").is_file() else OFFICIAL_CLASSES
        return images.spec(cfg, CHANNELS, classes, IMAGENET_MEAN, IMAGENET_STD)

    def load(self, cfg: TinyImageNetCfg, options: LoadOptions) -> DataBundle:
        dataset = images.subset(index(cfg.root), cfg)
        spec = images.spec(cfg, CHANNELS, len(dataset.classes), IMAGENET_MEAN, IMAGENET_STD)
        return images.load_files(cfg, spec, dataset, options)

    def prepare(self, cfg: TinyImageNetCfg) -> dict[str, Any]:
        decoded, info = images.decoded_arrays(cfg, images.subset(index(cfg.root), cfg), CHANNELS)
        return {**info, "splits": {s: {"images": len(d.labels), "skipped": len(d.skipped), "built": d.built,
                                       "path": str(d.path)} for s, d in decoded.items()}}  # fmt: skip
