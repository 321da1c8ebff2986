"""Where images come from: the file lists of TinyImageNet (official layout) and ImageFolder datasets, read as they
lie on disk. Every check that can fail runs here, before any decoding."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speedlab.errors import DataError

TINYIMAGENET_DIR = "tiny-imagenet-200"
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff"}
DOWNLOAD_HINT = "python -m speedlab data download"


@dataclass(frozen=True)
class FileSplit:
    """One split's images: paths relative to `base`, and integer labels."""

    base: Path
    files: list[str]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.files)

    def path(self, i: int) -> Path:
        return self.base / self.files[i]

    def subset(self, limit: int | None) -> FileSplit:
        """At most `limit` images, chosen by a fixed permutation so every class stays represented."""
        if limit is None or limit >= len(self.files):
            return self
        keep = np.sort(np.random.default_rng(0).permutation(len(self.files))[:limit])
        return FileSplit(self.base, [self.files[i] for i in keep], self.labels[keep])


@dataclass(frozen=True)
class FileDataset:
    name: str
    base: Path
    classes: list[str]
    train: FileSplit
    val: FileSplit


def _images_in(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_file() and Path(e.name).suffix.lower() in IMAGE_SUFFIXES)


def tinyimagenet(root: str | Path) -> FileDataset:
    """Index `<root>/tiny-imagenet-200` (wnids.txt, train/<wnid>/images/, val/images/ + val/val_annotations.txt)."""
    base = Path(root).expanduser().resolve() / TINYIMAGENET_DIR
    wnids_file = base / "wnids.txt"
    if not wnids_file.is_file():
        raise DataError(
            f"TinyImageNet not found: {wnids_file} does not exist. Fetch it with `{DOWNLOAD_HINT} --root {root}`, "
            f"or point data.root (or $SPEEDLAB_DATA) at the folder that holds {TINYIMAGENET_DIR}/."
        )
    classes = sorted({w.strip() for w in wnids_file.read_text().split() if w.strip()})
    index = {wnid: i for i, wnid in enumerate(classes)}

    files: list[str] = []
    labels: list[int] = []
    for wnid in classes:
        folder = base / "train" / wnid / "images"
        if not folder.is_dir():
            raise DataError(f"TinyImageNet is incomplete: {folder} is missing (class {wnid} is listed in wnids.txt)")
        names = _images_in(folder)
        files += [f"train/{wnid}/images/{n}" for n in names]
        labels += [index[wnid]] * len(names)
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
        if len(fields) < 2 or fields[1] not in index:
            raise DataError(f"{annotations}:{lineno}: expected '<file>\\t<wnid from wnids.txt>...', got {line!r}")
        val_files.append(f"val/images/{fields[0]}")
        val_labels.append(index[fields[1]])
    val = FileSplit(base, val_files, np.asarray(val_labels, dtype=np.int64))
    return FileDataset("tinyimagenet", base, classes, train, val)


def imagefolder(root: str | Path) -> FileDataset:
    """Index `<root>/train/<class>/*` and `<root>/val/<class>/*`; classes come from train/, sorted."""
    base = Path(root).expanduser().resolve()
    if not (base / "train").is_dir():
        raise DataError(
            f"ImageFolder dataset not found: {base / 'train'} does not exist. Expected <root>/train/<class>/*.jpg "
            "and <root>/val/<class>/*.jpg; set data.root to that folder."
        )
    classes = sorted(e.name for e in os.scandir(base / "train") if e.is_dir())
    if not classes:
        raise DataError(f"no class folders in {base / 'train'}")

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
            names = _images_in(folder) if folder.is_dir() else []
            files += [f"{name}/{cls}/{n}" for n in names]
            labels += [label] * len(names)
        return FileSplit(base, files, np.asarray(labels, dtype=np.int64))

    return FileDataset("imagefolder", base, classes, split("train"), split("val"))
