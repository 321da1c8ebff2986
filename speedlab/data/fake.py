"""Small fake datasets in the real formats, for tests and benchmarks of the real readers: TinyImageNet in its
official layout (real JPEG files; also for the decoded cache and the download path) and MNIST's four IDX files.
Their pixels come from the pattern generator, so they are learnable."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from speedlab.data import idx, patterns
from speedlab.data.sources.mnist import FILES as MNIST_FILES
from speedlab.data.sources.tinyimagenet import DATASET_DIR as TINYIMAGENET_DIR
from speedlab.errors import SpeedlabError


def _wnid(i: int) -> str:
    return f"n{90000000 + i:08d}"


def _save(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array.transpose(1, 2, 0)).save(path, format="JPEG", quality=90)


def write_fake_tinyimagenet(
    out: str | Path,
    *,
    classes: int = 10,
    train_per_class: int = 20,
    val_per_class: int = 5,
    size: int = 64,
    seed: int = 0,
    make_zip: bool = False,
) -> Path:
    """Write `<out>/tiny-imagenet-200/` (and `<out>/tiny-imagenet-200.zip` with `make_zip`); returns the folder."""
    base = Path(out) / TINYIMAGENET_DIR
    if base.exists():
        raise SpeedlabError(f"{base} already exists; choose another --out or remove it")
    tmp = Path(out) / f".{TINYIMAGENET_DIR}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    wnids = [_wnid(i) for i in range(classes)]
    train_x, train_y = patterns.generate(classes * train_per_class, classes, size, dataset_seed=seed, split="train")
    val_x, val_y = patterns.generate(classes * val_per_class, classes, size, dataset_seed=seed, split="val")

    (tmp / "val" / "images").mkdir(parents=True)
    (tmp / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    (tmp / "words.txt").write_text("".join(f"{w}\tfake class {i}\n" for i, w in enumerate(wnids)))
    counters = dict.fromkeys(range(classes), 0)
    for wnid in wnids:
        (tmp / "train" / wnid / "images").mkdir(parents=True)
    boxes: dict[str, list[str]] = {w: [] for w in wnids}
    for img, label in tqdm(
        zip(train_x, train_y, strict=True), total=len(train_y), desc="fake train", unit="img", leave=False
    ):
        wnid = wnids[label]
        name = f"{wnid}_{counters[label]}.JPEG"
        counters[label] += 1
        _save(img, tmp / "train" / wnid / "images" / name)
        boxes[wnid].append(f"{name}\t0\t0\t{size - 1}\t{size - 1}\n")
    for wnid, lines in boxes.items():
        (tmp / "train" / wnid / f"{wnid}_boxes.txt").write_text("".join(lines))
    annotations = []
    for i, (img, label) in enumerate(zip(val_x, val_y, strict=True)):
        _save(img, tmp / "val" / "images" / f"val_{i}.JPEG")
        annotations.append(f"val_{i}.JPEG\t{wnids[label]}\t0\t0\t{size - 1}\t{size - 1}\n")
    (tmp / "val" / "val_annotations.txt").write_text("".join(annotations))
    tmp.rename(base)  # appears complete or not at all

    if make_zip:
        archive = Path(out) / f"{TINYIMAGENET_DIR}.zip"
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
            for path in sorted(base.rglob("*")):
                zf.write(path, path.relative_to(base.parent).as_posix())
    return base


def write_fake_mnist(
    out: str | Path, *, train: int = 600, val: int = 100, seed: int = 0, gz: bool = True
) -> list[Path]:
    """Write MNIST's four IDX files (28 x 28 grey, 10 classes; gzipped unless `gz=False`) into `out`."""
    out = Path(out)
    written = []
    for split, n in (("train", train), ("val", val)):
        rgb, labels = patterns.generate(n, 10, 28, dataset_seed=seed, split=split)
        grey = rgb.astype(np.float32).mean(axis=1).round().astype(np.uint8)
        for stem, array in zip(MNIST_FILES[split], (grey, labels.astype(np.uint8)), strict=True):
            path = out / (f"{stem}.gz" if gz else stem)
            if path.exists():
                raise SpeedlabError(f"{path} already exists; choose another --out or remove it")
            idx.write(path, array)
            written.append(path)
    return written
