"""The roofline's FLOP counts: a convolution's backward costs twice its forward (input and weight gradients), also
for grouped and depthwise convolutions, where torch 2.15's own formula overcounts by the channel count."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from speedlab import roofline


@pytest.mark.parametrize("groups", [1, 4, 32], ids=["dense", "grouped", "depthwise"])
def test_a_convolution_backward_costs_twice_its_forward(groups):
    conv = nn.Conv2d(32, 32, 7, padding=3, groups=groups)
    x = torch.randn(2, 32, 16, 16, requires_grad=True)
    forward = roofline.count_flops(lambda: conv(x))
    assert forward == 2 * 2 * 16 * 16 * 32 * (32 // groups) * 49  # 2 FLOPs per multiply-add
    assert roofline.count_flops(lambda: conv(x).sum().backward()) == 3 * forward


def test_only_the_weight_gradient_when_the_input_needs_none():
    conv = nn.Conv2d(8, 8, 3, groups=8)
    x = torch.randn(1, 8, 10, 10)  # no gradient for the input: the backward computes the weight's alone
    forward = roofline.count_flops(lambda: conv(x))
    assert roofline.count_flops(lambda: conv(x).sum().backward()) == 2 * forward
