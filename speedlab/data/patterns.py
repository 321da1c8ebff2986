"""Class-dependent patterns plus noise as uint8 images: the pixels of the `synthetic` source and of the fake
datasets `data synth` writes (TinyImageNet JPEGs, MNIST IDX files).

Each class owns a colour and an oriented grating (frequency, angle); each image shifts the grating's phase, jitters
its brightness and adds pixel noise. A small ConvNet separates the classes within one short epoch, so accuracy on it
is a meaningful "did this speed-up break training?" check without any download.
"""

from __future__ import annotations

import math

import numpy as np
import torch

CHUNK = 1024  # images generated per step, to bound peak memory


def _class_params(num_classes: int, dataset_seed: int) -> dict[str, torch.Tensor]:
    """The fixed look of every class; depends on the dataset seed only, so train and val share it."""
    g = torch.Generator().manual_seed(1_000_003 * dataset_seed + 17)
    return {
        "colour": 0.15 + 0.7 * torch.rand(num_classes, 3, generator=g),
        "freq": 1.0 + 4.0 * torch.rand(num_classes, generator=g),  # cycles per image
        "angle": math.pi * torch.rand(num_classes, generator=g),
        "contrast": 0.25 + 0.2 * torch.rand(num_classes, generator=g),
    }


def _render(labels: torch.Tensor, params: dict[str, torch.Tensor], size: int, g: torch.Generator) -> torch.Tensor:
    n = labels.numel()
    coords = torch.linspace(0.0, 1.0, size)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    angle, freq = params["angle"][labels].view(n, 1, 1), params["freq"][labels].view(n, 1, 1)
    phase = 2 * math.pi * torch.rand(n, 1, 1, generator=g)
    wave = torch.sin(2 * math.pi * freq * (xx * torch.cos(angle) + yy * torch.sin(angle)) + phase)
    contrast = params["contrast"][labels].view(n, 1, 1, 1)
    brightness = 1.0 + 0.1 * (2 * torch.rand(n, 1, 1, 1, generator=g) - 1)
    img = params["colour"][labels].view(n, 3, 1, 1) * brightness * (1.0 + contrast * wave.unsqueeze(1))
    img = img + 0.06 * torch.randn(n, 3, size, size, generator=g)
    return (img.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


def generate(
    n: int, num_classes: int, size: int = 64, *, dataset_seed: int = 0, split: str = "train"
) -> tuple[np.ndarray, np.ndarray]:
    """`n` images (uint8, N x 3 x size x size) with balanced labels (int64), identical for identical arguments."""
    split_id = {"train": 1, "val": 2}.get(split, 3)
    g = torch.Generator().manual_seed(1_000_003 * dataset_seed + 7919 * split_id)
    labels = torch.arange(n) % num_classes
    labels = labels[torch.randperm(n, generator=g)]
    params = _class_params(num_classes, dataset_seed)
    images = np.empty((n, 3, size, size), dtype=np.uint8)
    for start in range(0, n, CHUNK):
        images[start : start + CHUNK] = _render(labels[start : start + CHUNK], params, size, g).numpy()
    return images, labels.numpy().astype(np.int64)
