"""Image files on disk as the file sources index them: one split's relative paths and labels, and a dataset's two
splits with its class names. Indexing reads directory listings only; nothing is decoded here."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff"}


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


def images_in(folder: Path) -> list[str]:
    """The image files directly in `folder`, sorted by name."""
    return sorted(e.name for e in os.scandir(folder) if e.is_file() and Path(e.name).suffix.lower() in IMAGE_SUFFIXES)
