"""Decoding one image file into the common square uint8 form both pipelines start from (no torch import here:
this runs in the cache builder's worker processes). Images come out with the channels their source declares: 3
(RGB) or 1 (grey)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError


class CorruptImageError(Exception):
    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


MODES = {1: "L", 3: "RGB"}


def load_image(path: str | Path, size: int, channels: int = 3) -> Image.Image:
    """The image in `channels` channels at `size` x `size`: shorter side resized to `size`, then centre-cropped (a
    no-op for 64 px TinyImageNet). Raises CorruptImageError naming the file if it cannot be decoded."""
    try:
        with Image.open(path) as im:
            im.load()  # decode now, so a truncated file fails here and not later in a transform
            img = im.convert(MODES[channels])
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as err:
        raise CorruptImageError(path, f"{type(err).__name__}: {err}") from None
    if img.size == (size, size):
        return img
    scale = size / min(img.size)
    resized = img.resize((max(size, round(img.width * scale)), max(size, round(img.height * scale))), Image.BILINEAR)
    left, top = (resized.width - size) // 2, (resized.height - size) // 2
    return resized.crop((left, top, left + size, top + size))


def to_chw(image: Image.Image) -> np.ndarray:
    """A PIL image as a channels x height x width uint8 array (grey images get their one channel axis)."""
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def decode_chw(path: str | Path, size: int, channels: int = 3) -> np.ndarray:
    """The image as a channels x size x size uint8 array."""
    return to_chw(load_image(path, size, channels))


def decode_many(paths: list[str], size: int, channels: int = 3) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Decode a chunk (one task of the cache builder): the stacked images and (position, reason) of corrupt ones,
    whose rows are left zero."""
    out = np.zeros((len(paths), channels, size, size), dtype=np.uint8)
    bad: list[tuple[int, str]] = []
    for i, path in enumerate(paths):
        try:
            out[i] = decode_chw(path, size, channels)
        except CorruptImageError as err:
            bad.append((i, err.reason))
    return out, bad
