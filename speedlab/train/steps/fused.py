"""`trainer.step=fused`: the whole training step of a small network as one native kernel, SimpleChains-style.

For a 4-32-16-4 MLP every stock lever stops at the framework's per-op cost (docs/results/small-networks.md): eight
skinny GEMMs, activations, an autograd tape and an optimizer loop, each a call. Here one C++ function
(speedlab/native/fused_mlp.cpp, compiled for the network's exact widths at first use and cached) runs forward,
loss, backward and AdamW: each layer's GEMM, bias and activation in one pass that also writes the activation's
derivative, threads splitting the batch (each thread its own tiles and gradients, summed once), and AdamW over the
flat buffers of `FlatAdamW` (functional.py), so checkpoints hold torch's AdamW format and move to and from
`trainer.step=module` and `functional`.

The kernel is a `torch.library` custom op (`speedlab::fused_step`), so torch.compile and the rest of the
trainer see an ordinary function of tensors. On a CUDA GPU the step runs its Triton twin instead
(speedlab/native/triton_mlp.py: two hidden layers, widths up to 128). Supported: the `mlp` family, activations
tanh, fasttanh (the same rational tanh), relu and gelu (erf), the task's own loss (mean squared error or
cross-entropy), AdamW (Adam is AdamW with optim.weight_decay=0), fp32. And the `lenet5` family on the CPU
(speedlab/native/fused_lenet.cpp, compiled for the first batch's image shape: direct 5x5 convolutions, pooling,
cross-entropy). `KERNELS` names the families a kernel exists for. The reference twin is `trainer.step=module`;
`parity` checks them.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

import activations
from speedlab import native
from speedlab.errors import SpeedlabError
from speedlab.native import triton_mlp
from speedlab.train import tasks
from speedlab.train.steps import Phase, register
from speedlab.train.steps.functional import BETAS, EPS, FlatAdamW

# Activation name -> the kernel's SL_ACT code (fasttanh is tanh's rational form, which the kernel computes anyway).
ACTIVATIONS = {"tanh": 0, "fasttanh": 0, "relu": 1, "gelu": 2}
MAX_WIDTH = 4096  # per layer: a tile's activations (64 samples x every width) stay within a core's L2
MAX_LAYERS = 16
FALLBACK = "without one, train with trainer.step=functional compile.enabled=true (the fastest stock step)"
_KERNELS: dict[int, tuple[Any, torch.Tensor]] = {}  # custom-op handle -> (kernel function, parameter offsets)
LENET_LAYERS = ("features.0", "features.3", "classifier.1", "classifier.3", "classifier.5")


@dataclass(frozen=True)
class Shape:
    """What a fused MLP kernel is compiled for."""

    widths: tuple[int, ...]  # inputs, hidden widths, outputs
    activation: str
    loss: str  # mse | cross_entropy

    def defines(self) -> dict[str, str | int]:
        return {"SL_LAYERS": len(self.widths) - 1, "SL_WIDTHS": ",".join(map(str, self.widths)),
                "SL_ACT": ACTIVATIONS[self.activation], "SL_LOSS": int(self.loss == "cross_entropy")}  # fmt: skip


def mlp_shape(module: nn.Module, activation: str, task: Any) -> tuple[Shape, list[str]]:
    """The fused kernel's shape for an `mlp` module (Flatten, then Linear and activation pairs, then a Linear),
    and the names of its Linear layers in order; SpeedlabError when the module or task is not one it runs."""
    layers = list(module.children())
    linears = [m for m in layers if isinstance(m, nn.Linear)]
    acts = {_activation(m) for m in layers if not isinstance(m, (nn.Linear, nn.Flatten))}
    if not linears or any(m.bias is None for m in linears) or len(acts) > 1 or None in acts:
        raise SpeedlabError(f"trainer.step=fused runs an mlp of Linear layers with biases and one activation of "
                            f"{', '.join(ACTIVATIONS)}; this model is {type(module).__name__}")  # fmt: skip
    if isinstance(task, tasks.Regression):
        loss = "mse"
    elif isinstance(task, tasks.Classification):
        loss = "cross_entropy"
    else:
        raise SpeedlabError("trainer.step=fused computes the task's own loss (mean squared error or cross-entropy); "
                            "a loss.target runs with trainer.step=module or functional")  # fmt: skip
    widths = (linears[0].in_features, *(m.out_features for m in linears))
    if len(linears) > MAX_LAYERS or max(widths) > MAX_WIDTH:
        raise SpeedlabError(f"trainer.step=fused compiles MLPs of up to {MAX_LAYERS} layers and widths up to "
                            f"{MAX_WIDTH}; this one has widths {list(widths)}")  # fmt: skip
    names = [n for n, m in module.named_children() if isinstance(m, nn.Linear)]
    return Shape(widths, activation, loss), names


def _activation(layer: nn.Module) -> str | None:
    """The fused kernel's name for an activation module, or None when it has no fused form."""
    if isinstance(layer, nn.GELU):
        return "gelu" if layer.approximate == "none" else None
    kinds = {type(activations.create(name)): name for name in ACTIVATIONS if name != "gelu"}
    return kinds.get(type(layer))


def lenet_defines(module: nn.Module, activation: str, image: tuple[int, ...]) -> dict[str, str | int]:
    """The fused LeNet5 kernel's macros for this module and image shape (C, H, W); SpeedlabError when it cannot."""
    conv1, conv2 = module.features[0], module.features[3]
    fc1, fc2, fc3 = module.classifier[1], module.classifier[3], module.classifier[5]
    if len(image) != 3 or image[0] != conv1.in_channels:
        raise SpeedlabError(f"trainer.step=fused: lenet5 takes C x H x W images of {conv1.in_channels} channels, "
                            f"not inputs of shape {list(image)}")  # fmt: skip
    return {"SL_IC": image[0], "SL_IH": image[1], "SL_IW": image[2], "SL_PAD": conv1.padding[0],
            "SL_C1": conv1.out_channels, "SL_C2": conv2.out_channels, "SL_F1": fc1.out_features,
            "SL_F2": fc2.out_features, "SL_K": fc3.out_features, "SL_ACT": ACTIVATIONS[activation]}  # fmt: skip


@torch.library.custom_op("speedlab::fused_step", mutates_args=("params", "exp_avg", "exp_avg_sq", "step_count"))
def fused_step(
    handle: int, params: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor, decay: torch.Tensor,
    step_count: torch.Tensor, x: torch.Tensor, y: torch.Tensor, lr: float, threads: int,
) -> torch.Tensor:  # fmt: skip
    """One fused step of the kernel registered as `handle`: the buffers updated in place, the mean loss returned."""
    kernel, offsets = _KERNELS[handle]
    x = x.contiguous()  # samples one after the other: (batch, features) or (batch, C, H, W)
    y = y.contiguous()
    loss = kernel(params.data_ptr(), exp_avg.data_ptr(), exp_avg_sq.data_ptr(), decay.data_ptr(),
                  step_count.data_ptr(), offsets.data_ptr(), params.numel(), x.data_ptr(), y.data_ptr(), x.shape[0],
                  lr, BETAS[0], BETAS[1], EPS, threads)  # fmt: skip
    return torch.tensor(loss, dtype=torch.float32)


@fused_step.register_fake
def _(handle, params, exp_avg, exp_avg_sq, decay, step_count, x, y, lr, threads) -> torch.Tensor:  # noqa: ANN001
    return torch.empty((), dtype=torch.float32)


def load(source: str, symbol: str, defines: dict[str, str | int], offsets: list[int]) -> tuple[int, bool]:
    """(the custom-op handle of `symbol` in `source` compiled for `defines`, whether the library was cached)."""
    lib, _, cached = native.library(source, defines, FALLBACK)
    kernel = getattr(lib, symbol)
    pointer = ctypes.c_void_p
    kernel.restype = ctypes.c_double
    kernel.argtypes = [pointer] * 6 + [ctypes.c_int64, pointer, pointer, ctypes.c_int64] + [ctypes.c_double] * 4 + [
        ctypes.c_int]  # fmt: skip
    handle = len(_KERNELS)
    _KERNELS[handle] = (kernel, torch.tensor(offsets, dtype=torch.int64))
    return handle, cached


class FusedStep:
    """Trainer's step for `trainer.step=fused`: one kernel call; `profile` times it as one phase. The kernel is
    compiled for the first batch's sample shape (`kernel_for(shape)` gives its custom-op handle)."""

    def __init__(self, kernel_for: Callable[[tuple[int, ...]], int], optimizer: FlatAdamW, threads: int) -> None:
        self.kernel_for, self.opt, self.threads = kernel_for, optimizer, threads
        self.handles: dict[tuple[int, ...], int] = {}

    def __call__(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
        o = self.opt
        o.lr.fill_(lr)
        sample = tuple(x.shape[1:])
        if sample not in self.handles:
            self.handles[sample] = self.kernel_for(sample)
        targets = y.float() if y.is_floating_point() else y.long()
        inputs = x if x.dtype == torch.float32 else x.float()
        return fused_step(self.handles[sample], o.params, o.exp_avg, o.exp_avg_sq, o.decay, o.step_count, inputs,
                          targets, lr, self.threads)  # fmt: skip

    def phases(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> list[Phase]:
        return [("step", lambda _: self(x, y, lr))]


class TritonFusedStep:
    """`trainer.step=fused` on a CUDA GPU: the Triton twin (speedlab/native/triton_mlp.py), the whole network's
    forward and backward in one kernel and AdamW in a second, on FlatAdamW's buffers."""

    def __init__(self, shape: Shape, names: list[str], optimizer: FlatAdamW) -> None:
        self.shape, self.opt = shape, optimizer
        self.flat_grad = torch.zeros_like(optimizer.params)
        params, grads = optimizer.views(optimizer.params), optimizer.views(self.flat_grad)
        self.layers, self.grads = [params[n] for n in names], [grads[n] for n in names]

    def __call__(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
        self.opt.lr.fill_(lr)
        return triton_mlp.step(self.layers, self.grads, self.flat_grad, self.opt, x, y, lr, self.shape.activation,
                               self.shape.loss, (*BETAS, EPS))  # fmt: skip

    def phases(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> list[Phase]:
        return [("step", lambda _: self(x, y, lr))]


@register("fused")
class Fused:
    label = "fused step"

    def check(self, cfg: Any) -> None:
        name = f"trainer.step={cfg.trainer.step}"
        family = cfg.model.name
        if family not in KERNELS:
            raise SpeedlabError(f"{name} runs the {', '.join(KERNELS)} family, not model={family}; use "
                                "trainer.step=module or functional for it")  # fmt: skip
        activation = str(cfg.model.activation)
        if activation not in ACTIVATIONS:
            raise SpeedlabError(f"model.activation={activation} with {name}: the fused kernel computes "
                                f"{', '.join(ACTIVATIONS)}")  # fmt: skip
        for key, on in (("optim.fused", cfg.optim.fused), ("optim.foreach", cfg.optim.foreach),
                        ("amp.enabled", cfg.amp.enabled)):  # fmt: skip
            if on:
                raise SpeedlabError(f"{key}=true with {name}: the fused kernel runs AdamW itself, in fp32; drop {key}")
        if cfg.loss.target is not None:
            raise SpeedlabError(f"loss.target with {name}: the fused kernel computes the task's own loss (mean "
                                "squared error or cross-entropy); use trainer.step=module for another")  # fmt: skip

    def check_device(self, cfg: Any, device: torch.device, distributed: bool) -> None:
        if device.type == "cuda" and triton_mlp.triton is None:
            raise SpeedlabError("trainer.step=fused on a GPU runs its Triton twin, and Triton is not installed; use "
                                "trainer.step=functional or graphed")  # fmt: skip
        if device.type not in ("cpu", "cuda"):
            raise SpeedlabError(f"trainer.step=fused runs on the CPU (native kernel) or a CUDA GPU (its Triton twin), "
                                f"not device={device.type}")  # fmt: skip
        if distributed:
            raise SpeedlabError("trainer.step=fused splits the batch among threads in one process; under torchrun "
                                "use trainer.step=module")  # fmt: skip
        if device.type == "cpu" and native.compiler() is None:
            raise native.CompilerMissing(f"trainer.step=fused compiles its kernel at first use and found no C++ "
                                         f"compiler (set $CXX, or install g++); {FALLBACK}")  # fmt: skip

    def optimizer(self, module: nn.Module, cfg: Any) -> FlatAdamW:
        return FlatAdamW(module, cfg.optim)

    def build(self, trainer: Any, cfg: Any) -> FusedStep | TritonFusedStep:
        return KERNELS[cfg.model.name](trainer, str(cfg.model.activation))


def _offsets(opt: FlatAdamW, layers: list[str]) -> list[int]:
    """Each layer's weight and bias offsets in the flat buffer, in order."""
    start = dict(zip(opt.names, [sum(opt.sizes[:i]) for i in range(len(opt.sizes))], strict=True))
    return [start[f"{name}.{part}"] for name in layers for part in ("weight", "bias")]


def _mlp_step(trainer: Any, activation: str) -> FusedStep | TritonFusedStep:
    shape, linears = mlp_shape(trainer.module, activation, trainer.task)
    opt = trainer.optimizer
    if trainer.device.type == "cuda":
        why = triton_mlp.unsupported(shape.widths, shape.activation, shape.loss)
        if why:
            raise SpeedlabError(f"trainer.step=fused on a GPU: {why}; use trainer.step=functional or graphed")
        return TritonFusedStep(shape, [f"{n}.{part}" for n in linears for part in ("weight", "bias")], opt)
    handle, _ = load("fused_mlp.cpp", "sl_mlp_step", shape.defines(), _offsets(opt, linears))
    return FusedStep(lambda sample: handle, opt, torch.get_num_threads())


def _lenet_step(trainer: Any, activation: str) -> FusedStep:
    if trainer.device.type != "cpu":
        raise SpeedlabError("trainer.step=fused runs lenet5 on the CPU; its Triton twin runs the mlp family")
    if not isinstance(trainer.task, tasks.Classification):
        raise SpeedlabError("trainer.step=fused trains lenet5 with cross-entropy (classification data); use "
                            "trainer.step=module for another task")  # fmt: skip
    offsets, module = _offsets(trainer.optimizer, list(LENET_LAYERS)), trainer.module

    def kernel(image: tuple[int, ...]) -> int:
        return load("fused_lenet.cpp", "sl_lenet_step", lenet_defines(module, activation, image), offsets)[0]

    return FusedStep(kernel, trainer.optimizer, torch.get_num_threads())


# The families a fused kernel exists for, each with the function that builds its step.
KERNELS: dict[str, Callable[[Any, str], FusedStep | TritonFusedStep]] = {"mlp": _mlp_step, "lenet5": _lenet_step}
