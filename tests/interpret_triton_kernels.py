"""Run by tests/test_fastswish.py under TRITON_INTERPRET=1: the Triton kernels on CPU tensors against float64.

Not collected by a plain `pytest` run (the interpreter must be on before the kernels are defined).
"""

from __future__ import annotations

import os

import pytest
import torch

from activations.fastswish import fastswish_derivative, fastswish_reference
from activations.fastswish_triton import launch_backward, launch_forward

pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1", reason="needs TRITON_INTERPRET=1")

# fp32 math inside the kernels: each output is the exact value rounded once to the output dtype (half an ulp),
# plus fp32 rounding of the intermediates.
TOLERANCES = {
    torch.float32: {"rtol": 1e-6, "atol": 1e-6},
    torch.bfloat16: {"rtol": 8e-3, "atol": 1e-5},
    torch.float16: {"rtol": 1e-3, "atol": 1e-6},
}
SPECIAL = [-1e4, -300.0, -10.0, -3.01, -3.0, -2.99, -1.0, 0.0, 1.0, 2.99, 3.0, 3.01, 10.0, 300.0, 1e4]


@pytest.mark.parametrize("dtype", list(TOLERANCES), ids=str)
@pytest.mark.parametrize("n", [0, 1, 1023, 1024, 3001])  # empty, single, around the block size, several blocks
def test_kernels_match_float64(dtype, n):
    torch.manual_seed(n)
    x = torch.cat([torch.tensor(SPECIAL), torch.randn(n) * 4])[:n].to(dtype)
    grad = torch.randn(n).to(dtype)
    y, dx = launch_forward(x), launch_backward(x, grad)
    assert y.dtype == dtype and dx.dtype == dtype and y.shape == x.shape
    exact = x.double()
    torch.testing.assert_close(y.double(), fastswish_reference(exact), **TOLERANCES[dtype])
    torch.testing.assert_close(dx.double(), grad.double() * fastswish_derivative(exact), **TOLERANCES[dtype])


def test_layouts_are_kept_or_made_dense():
    base = torch.randn(2, 4, 3, 3) * 4
    channels_last = base.contiguous(memory_format=torch.channels_last)
    assert launch_forward(channels_last).is_contiguous(memory_format=torch.channels_last)
    strided = base[:, ::2]
    torch.testing.assert_close(launch_forward(strided), fastswish_reference(strided))
    torch.testing.assert_close(
        launch_backward(strided, torch.ones_like(strided)), fastswish_derivative(strided), rtol=1e-6, atol=1e-6
    )
