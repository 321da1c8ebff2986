"""Input transforms for both pipelines, with the same augmentation recipe: random-resized-crop (area range from
the source's `crop_scale`, ratio 3/4-4/3) + horizontal flip for training, resize for evaluation, then the source's
per-channel normalisation.

`DeviceBatchTransform` runs a whole uint8 batch at once on the training device: one normalising conversion and
one `grid_sample` whose per-sample grid encodes each crop and flip. `classic_transform` is the per-image
torchvision twin used in DataLoader workers. Neither assumes a number of channels: mean and std give it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

CROP_SCALE = (0.08, 1.0)  # torchvision's (and ImageNet training's) default area range
CROP_RATIO = (3 / 4, 4 / 3)
CROP_ATTEMPTS = 10


@dataclass(frozen=True)
class Recipe:
    """What both pipelines do to an image: resize to `resolution`, normalise with the source's per-channel mean and
    std (of pixels in [0, 1]), and, for training with `augment`, a random-resized-crop over `crop_scale` of the area
    plus horizontal flips when `flip`."""

    resolution: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool = True
    crop_scale: tuple[float, float] = CROP_SCALE
    flip: bool = True


def sample_crop_boxes(
    n: int, height: int, width: int, generator: torch.Generator, scale: tuple[float, float] = CROP_SCALE
) -> torch.Tensor:
    """Per-sample random-resized-crop boxes as an n x 4 tensor (top, left, h, w) in whole pixels, drawn as
    torchvision's RandomResizedCrop draws them (10 attempts, then a centre crop clamped to the ratio range)."""
    area = height * width
    target = area * torch.empty(n, CROP_ATTEMPTS).uniform_(*scale, generator=generator)
    log_ratio = torch.empty(n, CROP_ATTEMPTS).uniform_(
        math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]), generator=generator
    )
    aspect = torch.exp(log_ratio)
    w = torch.sqrt(target * aspect).round()
    h = torch.sqrt(target / aspect).round()
    fits = (w > 0) & (h > 0) & (w <= width) & (h <= height)
    first = torch.where(fits.any(1), fits.float().argmax(1), torch.full((n,), -1))

    # Fallback: the whole image, cropped to the nearest allowed aspect ratio.
    in_ratio = width / height
    if in_ratio < CROP_RATIO[0]:
        fw, fh = width, round(width / CROP_RATIO[0])
    elif in_ratio > CROP_RATIO[1]:
        fw, fh = round(height * CROP_RATIO[1]), height
    else:
        fw, fh = width, height
    rows = torch.arange(n)
    pick = first.clamp(min=0)
    ok = first >= 0
    ch = torch.where(ok, h[rows, pick], torch.tensor(float(fh)))
    cw = torch.where(ok, w[rows, pick], torch.tensor(float(fw)))
    u = torch.rand(n, 2, generator=generator)
    top = torch.where(ok, torch.floor(u[:, 0] * (height - ch + 1)), torch.floor(torch.tensor((height - fh) / 2)))
    left = torch.where(ok, torch.floor(u[:, 1] * (width - cw + 1)), torch.floor(torch.tensor((width - fw) / 2)))
    return torch.stack([top, left, ch, cw], dim=1)


def crop_flip_grid(
    boxes: torch.Tensor, flip: torch.Tensor, height: int, width: int, size: int, out: torch.Tensor | None = None
) -> torch.Tensor:
    """The `grid_sample` grid (n x size x size x 2) that maps each output pixel centre into its crop box.

    Built by broadcasting one row and one column per sample (`F.affine_grid` does the same job several times
    slower on CPU); written into `out` when given."""
    n = boxes.shape[0]
    steps = (torch.arange(size, dtype=torch.float32, device=boxes.device) + 0.5) / size  # pixel centres in [0, 1]
    top, left, h, w = (boxes[:, i : i + 1] for i in range(4))
    xs = torch.where(flip.view(n, 1), 1.0 - steps, steps)
    gx = (left + xs * w) * (2.0 / width) - 1.0  # align_corners=False coordinates
    gy = (top + steps * h) * (2.0 / height) - 1.0
    grid = out if out is not None else torch.empty(n, size, size, 2, device=boxes.device)
    grid[..., 0].copy_(gx.view(n, 1, size))
    grid[..., 1].copy_(gy.view(n, size, 1))
    return grid


class DeviceBatchTransform:
    """uint8 N x C x H x W batch (on any device) -> normalised float32 N x C x R x R, augmented when training.

    The normalised input and the sampling grid live in scratch buffers reused from batch to batch: allocating
    them afresh costs page faults that, on CPU, took about a third of the time. The returned batch is always a
    new tensor, so callers may keep it."""

    def __init__(self, recipe: Recipe, *, train: bool) -> None:
        self.recipe, self.resolution = recipe, recipe.resolution
        self.augment = train and recipe.augment
        self._norm: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        self._scratch: dict[str, torch.Tensor] = {}

    def _buffer(self, name: str, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        buf = self._scratch.get(name)
        if buf is None or buf.shape != shape or buf.device != device:
            buf = self._scratch[name] = torch.empty(shape, dtype=torch.float32, device=device)
        return buf

    def _normalise(self, images: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        device = images.device
        if device not in self._norm:
            std = torch.tensor(self.recipe.std, device=device).view(1, -1, 1, 1)
            mean = torch.tensor(self.recipe.mean, device=device).view(1, -1, 1, 1)
            self._norm[device] = (1.0 / (255.0 * std), -mean / std)
        scale, shift = self._norm[device]
        # Normalising before resampling is exact (bilinear weights sum to one) and touches fewer pixels.
        if out is None:
            return torch.addcmul(shift, images.float(), scale)
        return torch.mul(images, scale, out=out).add_(shift)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        n, _, height, width = images.shape
        device = images.device
        if self.augment:
            x = self._normalise(images, out=self._buffer("input", tuple(images.shape), device))
            g = generator if generator is not None else torch.Generator().manual_seed(0)
            boxes = sample_crop_boxes(n, height, width, g, self.recipe.crop_scale).to(device)
            flip = (torch.rand(n, generator=g) < 0.5).to(device)  # drawn either way: same RNG stream
            if not self.recipe.flip:
                flip.zero_()
            grid = self._buffer("grid", (n, self.resolution, self.resolution, 2), device)
            crop_flip_grid(boxes, flip, height, width, self.resolution, out=grid)
            return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        x = self._normalise(images)
        if (height, width) != (self.resolution, self.resolution):
            down = self.resolution < min(height, width)
            return F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", antialias=down)
        return x


def classic_transform(recipe: Recipe, *, train: bool) -> Any:
    """Per-image torchvision transforms (a `v2.Compose`) for DataLoader workers (input: PIL image or uint8 C x H x W
    tensor)."""
    from torchvision.transforms import v2  # imported here: it costs every command a second at start-up

    size, steps = recipe.resolution, []
    if train and recipe.augment:
        steps.append(v2.RandomResizedCrop(size, scale=tuple(recipe.crop_scale), ratio=CROP_RATIO, antialias=True))
        if recipe.flip:
            steps.append(v2.RandomHorizontalFlip())
    else:
        steps += [v2.Resize((size, size), antialias=True)]
    steps += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(recipe.mean), list(recipe.std))]
    return v2.Compose(steps)
