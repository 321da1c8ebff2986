"""The activation registry: every name creates a fresh, parameter-free module."""

from __future__ import annotations

import pytest
import torch

import activations
from activations.fastswish import ALPHA, fastswish_reference


@pytest.mark.parametrize("name", activations.names())
def test_create_returns_a_fresh_parameter_free_module(name):
    a, b = activations.create(name), activations.create(name)
    assert isinstance(a, torch.nn.Module) and a is not b
    assert not list(a.parameters())  # checkpoints stay interchangeable between activations
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    y = a(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_required_names_are_registered():
    assert {"gelu", "gelu_tanh", "hardswish", "relu", "silu"} <= set(activations.names())


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(KeyError, match="unknown activation 'gleu'; valid names: .*gelu.*relu"):
        activations.create("gleu")


def test_fastswish_follows_its_definition_and_is_continuous():
    x = torch.tensor([-10.0, -3.5, -3.0, -1.0, 0.0, 1.0, 3.0, 3.5, 10.0], dtype=torch.float64)
    expected = torch.where(x > 3, x, torch.where(x < -3, -1 / x**2, x * (x + ALPHA) / (ALPHA + 3)))
    torch.testing.assert_close(fastswish_reference(x), expected, rtol=0, atol=1e-12)
    eps = torch.tensor([1e-9], dtype=torch.float64)
    for edge in (-3.0, 3.0):  # the pieces meet at +-3
        left, right = fastswish_reference(edge - eps), fastswish_reference(edge + eps)
        torch.testing.assert_close(left, right, rtol=0, atol=1e-7)
