"""The batched device transforms against their per-image twins (torchvision / F.interpolate)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from speedlab.data.sources.tinyimagenet import IMAGENET_MEAN, IMAGENET_STD
from speedlab.data.transforms import (
    CROP_RATIO,
    CROP_SCALE,
    DeviceBatchTransform,
    Recipe,
    classic_transform,
    crop_flip_grid,
    sample_crop_boxes,
)

NORM = (IMAGENET_MEAN, IMAGENET_STD)

# fp32 resampling of values in about [-2.2, 2.7]. The two paths compute sampling coordinates differently (a
# normalised grid vs a scale factor), so positions differ by ~1e-6 px: 5e-5 covers that with room to spare.
ATOL = 5e-5


def _images(n: int = 16, size: int = 64) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_boxes_follow_random_resized_crop():
    boxes = sample_crop_boxes(4096, 64, 64, torch.Generator().manual_seed(1))
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 64).all() and (left + w <= 64).all()
    area = h * w / 64**2
    # whole-pixel rounding widens the ranges slightly for small crops
    assert area.min() >= CROP_SCALE[0] * 0.8 and area.max() <= CROP_SCALE[1]
    ratio = w / h
    assert ratio.min() >= CROP_RATIO[0] * 0.85 and ratio.max() <= CROP_RATIO[1] / 0.85
    assert area.std() > 0.2  # actually random, not a constant crop


@pytest.mark.parametrize("resolution", [32, 64, 96])
def test_each_crop_matches_crop_then_resize(resolution):
    """Per sample, the batched grid_sample equals cropping then F.interpolate (torchvision's tensor path), on every
    output pixel whose sampling point lies inside the crop (at the crop's edge, grid_sample reads the real
    neighbouring pixels where interpolate repeats the edge)."""
    images = _images()
    transform = DeviceBatchTransform(Recipe(resolution, *NORM), train=True)
    x = transform._normalise(images)
    boxes = sample_crop_boxes(len(images), 64, 64, torch.Generator().manual_seed(2))
    flip = torch.arange(len(images)) % 2 == 1
    out = F.grid_sample(x, crop_flip_grid(boxes, flip, 64, 64, resolution), mode="bilinear", padding_mode="border",
                        align_corners=False)  # fmt: skip
    for i, (top, left, h, w) in enumerate(boxes.long().tolist()):
        ref = F.interpolate(x[i : i + 1, :, top : top + h, left : left + w], size=(resolution, resolution),
                            mode="bilinear", align_corners=False)  # fmt: skip
        if flip[i]:
            ref = ref.flip(-1)
        pos_y = (torch.arange(resolution) + 0.5) * h / resolution - 0.5
        pos_x = (torch.arange(resolution) + 0.5) * w / resolution - 0.5
        inside = ((pos_y >= 0) & (pos_y <= h - 1)).view(-1, 1) & ((pos_x >= 0) & (pos_x <= w - 1)).view(1, -1)
        if flip[i]:
            inside = inside.flip(-1)
        torch.testing.assert_close(out[i][:, inside], ref[0][:, inside], rtol=0, atol=ATOL)


def test_full_crop_is_identity_and_flip_is_exact():
    images = _images(2)
    x = DeviceBatchTransform(Recipe(64, *NORM), train=True)._normalise(images)
    full = torch.tensor([[0.0, 0.0, 64.0, 64.0]] * 2)
    out = F.grid_sample(x, crop_flip_grid(full, torch.tensor([False, True]), 64, 64, 64), mode="bilinear",
                        padding_mode="border", align_corners=False)  # fmt: skip
    torch.testing.assert_close(out[0], x[0], rtol=0, atol=ATOL)
    torch.testing.assert_close(out[1], x[1].flip(-1), rtol=0, atol=ATOL)


@pytest.mark.parametrize("resolution", [64, 128])
def test_eval_transform_matches_the_classic_one(resolution):
    images = _images(4)
    device = DeviceBatchTransform(Recipe(resolution, *NORM), train=False)(images)
    classic = torch.stack([classic_transform(Recipe(resolution, *NORM), train=False)(img) for img in images])
    # torchvision resizes uint8 tensors in uint8: one quantisation level, 1 / (255 * std), is the expected gap.
    torch.testing.assert_close(device, classic, rtol=0, atol=1 / (255 * min(IMAGENET_STD)) + 1e-5)


def test_training_transform_is_seeded_and_returns_a_fresh_tensor():
    images = _images(8)
    transform = DeviceBatchTransform(Recipe(48, *NORM), train=True)
    a = transform(images, torch.Generator().manual_seed(5))
    b = transform(images, torch.Generator().manual_seed(5))
    c = transform(images, torch.Generator().manual_seed(6))
    assert a.shape == (8, 3, 48, 48)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.data_ptr() != b.data_ptr()  # scratch buffers are internal; callers may keep what they get
