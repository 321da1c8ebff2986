"""The `mnist` source: MNIST (or any dataset in its IDX format and shape, such as Fashion-MNIST) from the four
standard files, plain or gzipped, in `data.root` itself or in torchvision's `<root>/MNIST/raw/` layout.

60,000 training and 10,000 test images (the val split) of 28 x 28 grey pixels, 10 classes. Both splits live on the
device as whole tensors. Augmentation is off by default, and when turned on it crops gently and never flips:
ImageNet's crops (8-100 % of the area) and mirror images wreck handwritten digits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speedlab.config import ImageDataCfg
from speedlab.data import idx, images, resident
from speedlab.data.loaders import DataBundle, LoadOptions
from speedlab.data.sources import register
from speedlab.data.spec import DataSpec
from speedlab.errors import DataError

CLASSES = 10
SIZE = 28
# The IDX files of each split; "train-images.idx3-ubyte" (a dot for the last dash) is a common variant.
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SYNTH_HINT = "python -m speedlab data synth --kind mnist --out DIR"


@dataclass
class MnistCfg(ImageDataCfg):
    name: str = "mnist"
    root: str = "${oc.env:SPEEDLAB_DATA,data}"  # folder of the four IDX files (or its MNIST/raw/)
    resolution: int = SIZE
    augment: bool = False
    crop_scale: list[float] = field(default_factory=lambda: [0.85, 1.0])
    flip: bool = False
    mean: float = 0.1307  # MNIST's pixel statistics (in [0, 1])
    std: float = 0.3081  # MNIST's pixel standard deviation


def folders(root: str | Path) -> list[Path]:
    base = Path(root).expanduser().resolve()
    return [base, base / "MNIST" / "raw"]


def find(root: str | Path, stem: str) -> Path:
    """The file `stem` (plain or .gz, with a dash or a dot before idxN) in the first folder that has it."""
    variants = [stem, stem.replace("-idx", ".idx")]
    for folder in folders(root):
        for name in variants:
            for candidate in (folder / name, folder / f"{name}.gz"):
                if candidate.is_file():
                    return candidate
    places = " or ".join(str(f) for f in folders(root))
    raise DataError(
        f"MNIST not found: no {stem}[.gz] in {places}. Put the four IDX files ({', '.join(sum(FILES.values(), ()))}) "
        f"in data.root or its MNIST/raw/, or write a small MNIST-shaped set with `{SYNTH_HINT}`."
    )


def read_split(root: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 N x 1 x 28 x 28 images, int64 labels) of a split, every file checked."""
    images_file, labels_file = (find(root, stem) for stem in FILES[split])
    pixels = idx.read(images_file, ndim=3)
    labels = idx.read(labels_file, ndim=1)
    if pixels.shape[0] != labels.shape[0]:
        raise DataError(
            f"{images_file} holds {pixels.shape[0]:,} images but {labels_file} holds {labels.shape[0]:,} labels: "
            "the files come from different downloads or one is damaged"
        )
    if pixels.shape[1:] != (SIZE, SIZE):
        raise DataError(f"{images_file}: images are {pixels.shape[1]} x {pixels.shape[2]}, MNIST's are {SIZE} x {SIZE}")
    if len(labels) and int(labels.max()) >= CLASSES:
        raise DataError(f"{labels_file}: label {int(labels.max())} is outside MNIST's classes 0-{CLASSES - 1}")
    return pixels[:, None], labels.astype(np.int64)


def cap(arrays: tuple[np.ndarray, np.ndarray], limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """At most `limit` samples, chosen by a fixed permutation so every class stays represented."""
    images_, labels = arrays
    if limit is None or limit >= len(labels):
        return arrays
    keep = np.sort(np.random.default_rng(0).permutation(len(labels))[:limit])
    return images_[keep], labels[keep]


@register("mnist", MnistCfg)
class Mnist:
    def spec(self, cfg: MnistCfg) -> DataSpec:
        if cfg.std <= 0:
            raise DataError(f"data.std={cfg.std}: must be > 0")
        return images.spec(cfg, 1, CLASSES, (cfg.mean,), (cfg.std,))

    def load(self, cfg: MnistCfg, options: LoadOptions) -> DataBundle:
        spec = self.spec(cfg)
        arrays = {
            "train": cap(read_split(cfg.root, "train"), cfg.train_size),
            "val": cap(read_split(cfg.root, "val"), cfg.val_size),
        }
        info = {"root": str(find(cfg.root, FILES["train"][0]).parent)}
        return resident.load_images(cfg, spec, arrays, options, info, classes=[str(i) for i in range(CLASSES)])
