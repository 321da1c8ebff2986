"""Run by tests/test_fastswish.py under TRITON_INTERPRET=1: the Triton kernels on CPU tensors against float64.

Not collected by a plain `pytest` run (the interpreter must be on before the kernels are defined).
"""

from __future__ import annotations

import contextlib
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


# The fused MLP step's GPU twin (speedlab/native/triton_mlp.py) against the functional step's reference math
# (torch.func gradients + FlatAdamW), fp32: each loss and parameter within 1e-5 after three steps. The batch of 150
# leaves a partial block of samples.
MLP_CASES = [((4, 32, 16, 4), "tanh", "mse"), ((4, 20, 12, 3), "gelu", "mse"), ((12, 24, 16, 10), "relu",
             "cross_entropy"), ((12, 24, 16, 10), "tanh", "cross_entropy")]  # fmt: skip


@pytest.mark.parametrize(("widths", "activation", "loss"), MLP_CASES)
def test_fused_mlp_step_matches_the_functional_step(widths, activation, loss):
    import activations
    from speedlab.config import OptimCfg
    from speedlab.native import triton_mlp
    from speedlab.train.steps.functional import FlatAdamW, step_function
    from speedlab.train.tasks import Classification, Regression

    def build() -> torch.nn.Sequential:
        torch.manual_seed(0)
        layers = []
        for fan_in, fan_out in zip(widths[:-2], widths[1:-1], strict=True):
            layers += [torch.nn.Linear(fan_in, fan_out), activations.create(activation)]
        return torch.nn.Sequential(torch.nn.Flatten(), *layers, torch.nn.Linear(widths[-2], widths[-1]))

    torch.manual_seed(1)
    x = torch.randn(150, widths[0])
    y = torch.randn(150, widths[-1]) if loss == "mse" else torch.randint(0, widths[-1], (150,))
    task = Regression() if loss == "mse" else Classification(widths[-1])
    reference, mine = build(), build()
    cfg = OptimCfg(lr=1e-2, weight_decay=0.05)
    ref_opt, opt = FlatAdamW(reference, cfg), FlatAdamW(mine, cfg)
    ref_step = step_function(reference, ref_opt, task.loss, contextlib.nullcontext)
    layers = [p for _, p in sorted(((n, p) for n, p in mine.named_parameters()), key=lambda item: _order(item[0]))]
    flat_grad = torch.zeros_like(opt.params)
    views = opt.views(flat_grad)
    grads = [views[n] for n, _ in sorted(mine.named_parameters(), key=lambda item: _order(item[0]))]
    for _ in range(3):
        ref_opt.lr.fill_(1e-2)
        expected = ref_step(ref_opt.params, ref_opt.exp_avg, ref_opt.exp_avg_sq, ref_opt.decay, ref_opt.step_count,
                            ref_opt.lr, x, y)  # fmt: skip
        got = triton_mlp.step(layers, grads, flat_grad, opt, x, y, 1e-2, activation, loss)
        torch.testing.assert_close(got, expected.float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(opt.params, ref_opt.params, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(opt.exp_avg_sq, ref_opt.exp_avg_sq, rtol=1e-4, atol=1e-9)
    assert float(opt.step_count) == 3


def _order(name: str) -> tuple[int, int]:
    """A Sequential's parameter names in layer order, weight before bias ("1.weight" < "1.bias" < "3.weight")."""
    index, kind = name.split(".")
    return int(index), 0 if kind == "weight" else 1


def test_the_trainers_triton_fused_step_is_wired_to_its_buffers():
    """TritonFusedStep (what trainer.step=fused builds on a GPU), here on CPU tensors: the module's layers in order
    and the flat gradient's views line up, so a trainer's steps match the module step's."""
    from speedlab import cli
    from speedlab.data.build import build_data
    from speedlab.train.builder import build_trainer
    from speedlab.train.steps import fused
    from speedlab.train.steps.functional import FlatAdamW

    overrides = ["model=mlp", "data=matrix_exp", "data.train_size=300", "data.val_size=64", "trainer.batch_size=150",
                 "optim.schedule=constant"]  # fmt: skip
    cfg = cli.compose("train", overrides)
    data = build_data(cfg.data, seed=0, batch_size=150, device=torch.device("cpu"))
    reference = build_trainer(cfg, data.spec, torch.device("cpu"), data=data)
    mine = build_trainer(cli.compose("train", overrides), data.spec, torch.device("cpu"), data=data)
    opt = FlatAdamW(mine.module, cfg.optim)
    shape, linears = fused.mlp_shape(mine.module, "tanh", mine.task)
    step = fused.TritonFusedStep(shape, [f"{n}.{part}" for n in linears for part in ("weight", "bias")], opt)
    x, y = next(iter(data.train.epoch(1)))
    for _ in range(3):
        torch.testing.assert_close(step(x, y, 1e-2), reference.step(x, y, 1e-2), rtol=1e-5, atol=1e-6)
    for p, q in zip(reference.module.parameters(), mine.module.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5)
