"""The fused MLP step's GPU twin: tiny-cuda-nn's idea in Triton, the whole network's forward and backward in one
kernel.

`_mlp_step_kernel` gives each program a block of samples and keeps the block's activations in registers (on-chip)
from the input to the loss and back: the three weight matrices are loaded once per program (a few KB, on-chip for
the whole pass), each layer is one `tl.dot` (fp32 in, IEEE fp32 products: no TF32, so the step matches the CPU
kernel and torch), the activation's derivative is kept from the forward pass, and each program adds its weight and
bias gradients to the flat gradient buffer with atomics. `_adamw_kernel` then updates the flat buffers of
`FlatAdamW` in one pass. `step(...)` launches both.

It runs MLPs of two hidden layers (the reference's 4-32-16-4 shape) with widths up to 128 (each padded to a power
of two of at least 16, as `tl.dot` needs), tanh (the rational form the CPU kernel and ATen use), relu or gelu
(erf), mean squared error or cross-entropy. Under `TRITON_INTERPRET=1` it runs on CPU tensors (how
tests/interpret_triton_kernels.py checks it against torch), and tests/test_triton_aot.py compiles it to cubin for
sm_80 and sm_90 with no GPU here.
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # the CPU-only install may lack Triton
    triton = None

MAX_WIDTH = 128
HIDDEN_LAYERS = 2
BLOCK = 64  # samples per program
ADAM_BLOCK = 1024
ACTIVATIONS = {"tanh": 0, "fasttanh": 0, "relu": 1, "gelu": 2}
LOSSES = {"mse": 0, "cross_entropy": 1}


def padded(width: int) -> int:
    """The width `tl.dot` computes with: the next power of two, at least 16."""
    return max(16, 1 << (width - 1).bit_length())


if triton is not None:

    @triton.jit
    def _tanh(z):
        c = tl.minimum(tl.maximum(z, -7.90531110763549805), 7.90531110763549805)
        s = c * c
        p = -2.76076847742355e-16
        p = p * s + 2.00018790482477e-13
        p = p * s + -8.60467152213735e-11
        p = p * s + 5.12229709037114e-08
        p = p * s + 1.48572235717979e-05
        p = p * s + 6.37261928875436e-04
        p = p * s + 4.89352455891786e-03
        q = 1.19825839466702e-06
        q = q * s + 1.18534705686654e-04
        q = q * s + 2.26843463243900e-03
        q = q * s + 4.89352518554385e-03
        r = c * p / q
        return tl.where(tl.abs(z) < 7.90531110763549805, r, tl.where(z > 0, 1.0, -1.0))

    @triton.jit
    def _activate(z, ACT: tl.constexpr):
        """(the activation of z, its derivative)"""
        if ACT == 0:
            t = _tanh(z)
            return t, 1.0 - t * t
        elif ACT == 1:
            on = z > 0
            return tl.where(on, z, 0.0), tl.where(on, 1.0, 0.0)
        else:
            cdf = 0.5 * (1.0 + tl.erf(z * 0.70710678118654752))
            return z * cdf, cdf + z * 0.39894228040143268 * tl.exp(-0.5 * z * z)

    @triton.jit
    def _load_matrix(ptr, rows, cols, R: tl.constexpr, C: tl.constexpr):
        """A row-major rows x cols matrix, zero-padded to R x C."""
        r = tl.arange(0, R)
        c = tl.arange(0, C)
        mask = (r[:, None] < rows) & (c[None, :] < cols)
        return tl.load(ptr + r[:, None] * cols + c[None, :], mask=mask, other=0.0)

    @triton.jit
    def _add_matrix(ptr, value, rows, cols, R: tl.constexpr, C: tl.constexpr):
        r = tl.arange(0, R)
        c = tl.arange(0, C)
        mask = (r[:, None] < rows) & (c[None, :] < cols)
        tl.atomic_add(ptr + r[:, None] * cols + c[None, :], value, mask=mask)

    @triton.jit
    def _mlp_step_kernel(
        x_ptr, y_ptr, w1, b1, w2, b2, w3, b3, gw1, gb1, gw2, gb2, gw3, gb3, loss_ptr, batch,
        F0: tl.constexpr, H1: tl.constexpr, H2: tl.constexpr, F3: tl.constexpr,
        P0: tl.constexpr, P1: tl.constexpr, P2: tl.constexpr, P3: tl.constexpr,
        ACT: tl.constexpr, LOSS: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        rows = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        valid = rows < batch
        c0, c1, c2, c3 = tl.arange(0, P0), tl.arange(0, P1), tl.arange(0, P2), tl.arange(0, P3)
        x = tl.load(x_ptr + rows[:, None] * F0 + c0[None, :], mask=valid[:, None] & (c0[None, :] < F0), other=0.0)
        W1 = _load_matrix(w1, H1, F0, P1, P0)
        W2 = _load_matrix(w2, H2, H1, P2, P1)
        W3 = _load_matrix(w3, F3, H2, P3, P2)
        B1 = tl.load(b1 + c1, mask=c1 < H1, other=0.0)
        B2 = tl.load(b2 + c2, mask=c2 < H2, other=0.0)
        B3 = tl.load(b3 + c3, mask=c3 < F3, other=0.0)
        # Forward: each layer one dot, fp32 products (no TF32).
        h1, d1 = _activate(tl.dot(x, tl.trans(W1), input_precision="ieee") + B1[None, :], ACT)
        h2, d2 = _activate(tl.dot(h1, tl.trans(W2), input_precision="ieee") + B2[None, :], ACT)
        out = tl.dot(h2, tl.trans(W3), input_precision="ieee") + B3[None, :]
        cell = valid[:, None] & (c3[None, :] < F3)
        if LOSS == 0:  # mean squared error over every output
            y = tl.load(y_ptr + rows[:, None] * F3 + c3[None, :], mask=cell, other=0.0)
            err = tl.where(cell, out - y, 0.0)
            scale = 1.0 / (batch * F3)
            tl.atomic_add(loss_ptr, tl.sum(tl.sum(err * err, axis=1), axis=0) * scale)
            delta3 = 2.0 * scale * err
        else:  # cross-entropy, mean over the samples
            labels = tl.load(y_ptr + rows, mask=valid, other=0)
            logits = tl.where(c3[None, :] < F3, out, -float("inf"))  # padding columns: exp() = 0
            top = tl.max(logits, axis=1)
            e = tl.exp(logits - top[:, None])
            total = tl.sum(e, axis=1)
            picked = tl.sum(tl.where(c3[None, :] == labels[:, None], out, 0.0), axis=1)
            per_row = tl.where(valid, tl.log(total) + top - picked, 0.0)
            tl.atomic_add(loss_ptr, tl.sum(per_row, axis=0) / batch)
            onehot = tl.where(c3[None, :] == labels[:, None], 1.0, 0.0)
            delta3 = tl.where(cell, (e / total[:, None] - onehot) / batch, 0.0)
        # Backward: weight gradients as dots over the block's samples, added with atomics.
        _add_matrix(gw3, tl.dot(tl.trans(delta3), h2, input_precision="ieee"), F3, H2, P3, P2)
        tl.atomic_add(gb3 + c3, tl.sum(delta3, axis=0), mask=c3 < F3)
        delta2 = tl.dot(delta3, W3, input_precision="ieee") * d2
        _add_matrix(gw2, tl.dot(tl.trans(delta2), h1, input_precision="ieee"), H2, H1, P2, P1)
        tl.atomic_add(gb2 + c2, tl.sum(delta2, axis=0), mask=c2 < H2)
        delta1 = tl.dot(delta2, W2, input_precision="ieee") * d1
        _add_matrix(gw1, tl.dot(tl.trans(delta1), x, input_precision="ieee"), H1, F0, P1, P0)
        tl.atomic_add(gb1 + c1, tl.sum(delta1, axis=0), mask=c1 < H1)

    @triton.jit
    def _adamw_kernel(p_ptr, g_ptr, m_ptr, v_ptr, decay_ptr, step_ptr, n, lr, beta1, beta2, eps,
                      BLOCK: tl.constexpr):  # fmt: skip
        """FlatAdamW's update (functional.py) on the flat buffers; the step count was already advanced."""
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = i < n
        t = tl.load(step_ptr)
        bias1 = 1.0 - tl.exp(t * tl.log(beta1))
        root_bias2 = tl.sqrt(1.0 - tl.exp(t * tl.log(beta2)))
        p = tl.load(p_ptr + i, mask=mask, other=0.0)
        g = tl.load(g_ptr + i, mask=mask, other=0.0)
        m = tl.load(m_ptr + i, mask=mask, other=0.0)
        v = tl.load(v_ptr + i, mask=mask, other=0.0)
        decay = tl.load(decay_ptr + i, mask=mask, other=0.0)
        p = p * (1.0 - lr * decay)
        m = m + (1.0 - beta1) * (g - m)
        v = beta2 * v + (1.0 - beta2) * g * g
        p = p - (lr / bias1) * m / (tl.sqrt(v) / root_bias2 + eps)
        tl.store(p_ptr + i, p, mask=mask)
        tl.store(m_ptr + i, m, mask=mask)
        tl.store(v_ptr + i, v, mask=mask)


def unsupported(widths: tuple[int, ...], activation: str, loss: str) -> str | None:
    """Why the Triton twin cannot run this MLP, or None."""
    if triton is None:
        return "Triton is not installed (it comes with torch's Linux wheels)"
    if len(widths) != HIDDEN_LAYERS + 2 or max(widths) > MAX_WIDTH:
        return (f"the Triton twin runs MLPs of {HIDDEN_LAYERS} hidden layers with widths up to {MAX_WIDTH}; this one "
                f"has widths {list(widths)}")  # fmt: skip
    if activation not in ACTIVATIONS or loss not in LOSSES:
        return f"the Triton twin computes {', '.join(ACTIVATIONS)} with {', '.join(LOSSES)}"
    return None


def step(layers: list[torch.Tensor], grads: list[torch.Tensor], flat_grad: torch.Tensor, opt, x: torch.Tensor,
         y: torch.Tensor, lr: float, activation: str, loss: str,
         adam: tuple[float, float, float] = (0.9, 0.999, 1e-8)) -> torch.Tensor:  # fmt: skip
    """One fused step: `layers` are [w1, b1, w2, b2, w3, b3] (views of `opt.params`, a FlatAdamW), `grads` the
    same views of `flat_grad`, `adam` the betas and eps; the loss comes back as a 0-d tensor on the device (no host
    sync)."""
    w1, w2, w3 = layers[0], layers[2], layers[4]
    widths = (w1.shape[1], w1.shape[0], w2.shape[0], w3.shape[0])
    flat_grad.zero_()
    total = torch.zeros((), dtype=torch.float32, device=x.device)
    x = x.reshape(len(x), -1).float().contiguous()
    y = y.float().contiguous() if y.is_floating_point() else y.long().contiguous()
    grid = (triton.cdiv(len(x), BLOCK),)
    _mlp_step_kernel[grid](
        x, y, *layers, *grads, total, len(x), *widths, *(padded(w) for w in widths),
        ACT=ACTIVATIONS[activation], LOSS=LOSSES[loss], BLOCK=BLOCK,
    )  # fmt: skip
    opt.step_count.add_(1)
    n = opt.params.numel()
    _adamw_kernel[(triton.cdiv(n, ADAM_BLOCK),)](
        opt.params, flat_grad, opt.exp_avg, opt.exp_avg_sq, opt.decay, opt.step_count, n, float(lr), *adam,
        BLOCK=ADAM_BLOCK,
    )  # fmt: skip
    return total
