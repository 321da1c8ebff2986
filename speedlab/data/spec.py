"""What a data source declares about its samples: everything downstream (models, trainer, bench, export, profile)
reads shapes, outputs and the task from here, never from assumptions of its own."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

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

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task {self.task!r}: valid tasks are {', '.join(TASKS)}")
        if not self.input_shape or min(self.input_shape) < 1 or self.num_outputs < 1:
            raise ValueError(f"input shape {self.input_shape} and {self.num_outputs} outputs must all be >= 1")
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))

    @property
    def is_image(self) -> bool:
        """Inputs are C x H x W (convolutions, channels_last and resolution apply)."""
        return len(self.input_shape) == 3

    @property
    def features(self) -> int:
        """Numbers per sample (what a flattening model sees)."""
        return math.prod(self.input_shape)

    def describe(self) -> str:
        shape = "x".join(map(str, self.input_shape))
        outputs = f"{self.num_outputs} classes" if self.task == "classification" else f"{self.num_outputs} targets"
        return f"{self.task}, input {shape}, {outputs}"

    def record(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> DataSpec:
        def tup(v: Any) -> tuple | None:
            return None if v is None else tuple(v)

        return cls(data["task"], tuple(data["input_shape"]), int(data["num_outputs"]), tup(data.get("mean")),
                   tup(data.get("std")))  # fmt: skip
