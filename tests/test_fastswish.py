"""FastSwish variants: forward and gradient parity with a float64 reference per dtype, the custom op's contract,
compilation of a ConvNeXt block with each variant, and what each saves for backward."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import activations
from activations.fastswish import fastswish_derivative, fastswish_reference
from activations.fastswish_triton import fastswish_backward_op, fastswish_op, implementation
from speedlab.models.convnext import Block
from tests.conftest import REPO

VARIANTS = [name for name in activations.names() if name.startswith("fastswish")]

# Tolerances against float64 evaluated on the same (rounded) inputs. fp32: a few ulp. bf16 (8-bit mantissa) and fp16
# (11-bit): the variants that compute in the input dtype round each of 3-4 intermediate results, so allow ~4 ulp of
# the output's magnitude, with an absolute floor for outputs near zero.
TOLERANCES = {
    torch.float32: {"rtol": 1e-5, "atol": 1e-6},
    torch.bfloat16: {"rtol": 1.6e-2, "atol": 1e-2},
    torch.float16: {"rtol": 2e-3, "atol": 1e-3},
}
# Branch points, their neighbours, zero, and large magnitudes (fp16's x**2 overflows from 256 up).
SPECIAL = [-1e4, -300.0, -10.0, -3.01, -3.0, -2.99, -1.0, -1e-3, 0.0, 1e-3, 1.0, 2.99, 3.0, 3.01, 10.0, 300.0, 1e4]


def inputs(dtype: torch.dtype) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.cat([torch.tensor(SPECIAL), torch.randn(2000) * 4]).to(dtype)


@pytest.mark.parametrize("dtype", list(TOLERANCES), ids=str)
@pytest.mark.parametrize("name", VARIANTS)
def test_forward_and_gradient_match_the_float64_reference(name, dtype):
    x = inputs(dtype).requires_grad_()
    grad_out = torch.randn(x.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    y = activations.create(name)(x)
    y.backward(grad_out)
    exact = x.detach().double()
    assert y.dtype == dtype and x.grad.dtype == dtype
    torch.testing.assert_close(y.double(), fastswish_reference(exact), **TOLERANCES[dtype])
    torch.testing.assert_close(x.grad.double(), grad_out.double() * fastswish_derivative(exact), **TOLERANCES[dtype])


@pytest.mark.parametrize("name", VARIANTS)
def test_gradcheck_in_float64_away_from_the_kinks(name):
    x = torch.randn(64, dtype=torch.float64) * 4
    x = torch.where((x.abs() - 3).abs() < 1e-2, x + 0.1, x).requires_grad_()  # +-3: one-sided slopes differ
    assert torch.autograd.gradcheck(activations.create(name), (x,))


@pytest.mark.parametrize("name", VARIANTS)
def test_non_contiguous_and_empty_inputs(name):
    act = activations.create(name)
    base = torch.randn(8, 6, 5, 5) * 4
    for x in (base[:, ::2], base.permute(0, 2, 3, 1), base.contiguous(memory_format=torch.channels_last)):
        x = x.clone().requires_grad_() if not x.is_contiguous() else x.requires_grad_()
        y = act(x)
        y.sum().backward()
        torch.testing.assert_close(y, fastswish_reference(x.detach()), **TOLERANCES[torch.float32])
        torch.testing.assert_close(x.grad, fastswish_derivative(x.detach()), **TOLERANCES[torch.float32])
    for shape in ((0,), (2, 0, 3)):
        x = torch.empty(shape, requires_grad=True)
        y = act(x)
        y.sum().backward()
        assert y.shape == shape and x.grad.shape == shape


def test_custom_op_passes_opcheck():
    x = torch.randn(4, 8, requires_grad=True)
    torch.library.opcheck(fastswish_op, (x,))
    torch.library.opcheck(fastswish_backward_op, (torch.randn(4, 8), torch.randn(4, 8)))


def test_implementation_is_chosen_explicitly_per_device():
    assert implementation("cpu") == "inductor-fallback"
    assert activations.create("fastswish_triton").implementation("cpu", torch.bfloat16) == "inductor-fallback"
    assert implementation("cuda", torch.float64) == "inductor-fallback"  # the kernels take fp32/bf16/fp16
    assert activations.implementation("fastswish_triton", "cpu") == "inductor-fallback"
    assert activations.implementation("gelu", "cpu") == "pytorch"


def test_triton_kernels_match_the_reference_under_the_interpreter():
    """The @triton.jit kernels themselves, run on CPU tensors by Triton's interpreter (in a subprocess: the
    interpreter is chosen when the kernels are defined)."""
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/interpret_triton_kernels.py"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and "skipped" not in out.stdout


@pytest.mark.parametrize("name", VARIANTS)
def test_convnext_block_compiles_in_one_graph_and_matches_eager(name):
    torch.manual_seed(0)
    block = Block(16, lambda: activations.create(name), drop_path=0.0, layer_scale_init=1.0)
    x = torch.randn(2, 16, 8, 8) * 3
    compiled = torch.compile(block, fullgraph=True)  # fails on any graph break
    x_eager, x_compiled = x.clone().requires_grad_(), x.clone().requires_grad_()
    block(x_eager).square().sum().backward()
    grads_eager = [p.grad.clone() for p in block.parameters()]
    block.zero_grad()
    out = compiled(x_compiled)
    out.square().sum().backward()
    torch.testing.assert_close(out, block(x), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(x_compiled.grad, x_eager.grad, rtol=1e-4, atol=1e-4)
    for got, want in zip((p.grad for p in block.parameters()), grads_eager, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_a_checkpoint_loads_across_variants():
    from speedlab.data.spec import DataSpec
    from speedlab.models import build
    from speedlab.models.convnext import ConvNeXtCfg

    tiny, spec = {"depths": [1, 1, 1, 1], "dims": [8, 16, 32, 64]}, DataSpec("classification", (3, 32, 32), 5)
    state = build(ConvNeXtCfg(activation="fastswish_naive", **tiny), spec).state_dict()
    for name in VARIANTS:
        build(ConvNeXtCfg(activation=name, **tiny), spec).load_state_dict(state)  # strict
