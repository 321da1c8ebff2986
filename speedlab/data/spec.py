"""What a data source declares about its samples: everything downstream (models, trainer, bench, export, profile)
reads shapes, outputs and the task from here, never from assumptions of its own."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

TASKS = ("classification", "regression")


@dataclass(frozen=True)
class DataSpec:
    """One sample's input shape (C x H x W for images, (features,) for vectors), the number of outputs (classes for
    classification, targets for regression), the task, and the per-channel normalisation the loaders apply (None
    when inputs are used as they are)."""

    task: str
    input_shape: tuple[int, ...]
    num_outputs: int
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    # The inputs' dtype: float32 for images and features; an integer dtype (int64 token ids) for inputs an embedding
    # looks up, whose values are ids in [0, input_high). Random inputs (bench, export's checks, profile) honour both.
    input_dtype: str = "float32"
    input_high: int | None = None
    # One sample's target shape: () for a class id (default for classification), (num_outputs,) for regression;
    # per-position targets (a segmentation map, token labels) have the positions' shape.
    target_shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task {self.task!r}: valid tasks are {', '.join(TASKS)}")
        if not self.input_shape or min(self.input_shape) < 1 or self.num_outputs < 1:
            raise ValueError(f"input shape {self.input_shape} and {self.num_outputs} outputs must all be >= 1")
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))
        if self.target_shape is None:
            default = () if self.task == "classification" else (self.num_outputs,)
            object.__setattr__(self, "target_shape", default)
        object.__setattr__(self, "target_shape", tuple(int(d) for d in self.target_shape))
        if not isinstance(getattr(torch, self.input_dtype, None), torch.dtype):
            raise ValueError(f"input dtype {self.input_dtype!r} is no torch dtype")
        if self.integer_inputs and (self.input_high is None or self.input_high < 1):
            raise ValueError(f"integer inputs ({self.input_dtype}) need input_high >= 1 (ids lie in [0, input_high))")

    @property
    def integer_inputs(self) -> bool:
        return not getattr(torch, self.input_dtype).is_floating_point

    @property
    def is_image(self) -> bool:
        """Inputs are float C x H x W (convolutions, channels_last and resolution apply)."""
        return len(self.input_shape) == 3 and not self.integer_inputs

    def example(self, batch: int, *, seed: int = 0, device: torch.device | str = "cpu",
                float_dtype: torch.dtype = torch.float32) -> torch.Tensor:  # fmt: skip
        """A batch of random inputs as the data gives them: standard normal (what normalised data looks like) in
        `float_dtype` for float inputs; ids drawn uniformly from [0, input_high) for integer inputs (an embedding
        must never see a random float or an id past its table)."""
        generator = torch.Generator().manual_seed(seed)
        shape = (batch, *self.input_shape)
        if self.integer_inputs:
            x = torch.randint(0, self.input_high, shape, generator=generator, dtype=getattr(torch, self.input_dtype))
        else:
            x = torch.randn(shape, generator=generator, dtype=float_dtype)
        return x.to(device)

    @property
    def features(self) -> int:
        """Numbers per sample (what a flattening model sees)."""
        return math.prod(self.input_shape)

    def describe(self) -> str:
        shape = "x".join(map(str, self.input_shape))
        if self.integer_inputs:
            shape += f" {self.input_dtype} ids < {self.input_high}"
        outputs = f"{self.num_outputs} classes" if self.task == "classification" else f"{self.num_outputs} targets"
        return f"{self.task}, input {shape}, {outputs}"

    def record(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> DataSpec:
        def tup(v: Any) -> tuple | None:
            return None if v is None else tuple(v)

        return cls(data["task"], tuple(data["input_shape"]), int(data["num_outputs"]), tup(data.get("mean")),
                   tup(data.get("std")), data.get("input_dtype", "float32"), data.get("input_high"),
                   tup(data.get("target_shape")))  # fmt: skip
