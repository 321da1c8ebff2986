"""What training optimises and evaluation reports, per task a source declares (`DataSpec.task`).

- classification: cross-entropy; val loss, top-1 and top-5 accuracy (%);
- regression: mean squared error over every target number; val loss and val MSE (the same figure);
- the user's loss (`loss.target`) in either's place, for models with outputs of their own making.

Classification counts positions, not samples, when targets have positions (segmentation maps, token labels).

Evaluation accumulates sums on the device (no host sync per batch) and turns them into figures once per pass.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from speedlab import targets
from speedlab.config import LossCfg
from speedlab.data.spec import DataSpec


class Task(Protocol):
    metric: str  # the headline validation figure in result.json and the summary
    higher_is_better: bool

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor: ...

    def sums(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor: ...

    def figures(self, sums: list[float]) -> dict[str, Any]: ...


class Classification:
    metric, higher_is_better = "val_acc", True

    def __init__(self, classes: int) -> None:
        self.k = min(5, classes)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets)

    def sums(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        topk = outputs.topk(self.k, dim=1).indices
        return torch.stack([
            F.cross_entropy(outputs.float(), targets, reduction="sum").double(),
            (topk[:, 0] == targets).sum().double(),
            (topk == targets[:, None]).any(dim=1).sum().double(),
            torch.tensor(float(targets.numel()), dtype=torch.float64, device=targets.device),
        ])  # fmt: skip

    def figures(self, sums: list[float]) -> dict[str, Any]:
        loss, top1, topk, n = sums
        n = max(n, 1.0)
        return {"val_loss": loss / n, "val_acc": 100 * top1 / n, "val_top5": 100 * topk / n}


class Regression:
    metric, higher_is_better = "val_mse", False

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(outputs.float(), targets)

    def sums(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        squared = F.mse_loss(outputs.float(), targets, reduction="sum").double()
        count = torch.tensor(float(targets.numel()), dtype=torch.float64, device=targets.device)
        return torch.stack([squared, count])

    def figures(self, sums: list[float]) -> dict[str, Any]:
        squared, n = sums
        mse = squared / max(n, 1.0)
        return {"val_loss": mse, "val_mse": mse}


class UserLoss:
    """The user's loss (`loss.target`) in the task's place: training minimises it, validation reports it as
    `val_loss`, and the task's own figures (accuracy, MSE) on the output `loss.output` picks (or on the output
    itself when it is one tensor)."""

    higher_is_better = False

    def __init__(self, task: Task, fn: Callable[[Any, torch.Tensor], torch.Tensor], output: str | None) -> None:
        self.task, self.fn, self.output = task, fn, output
        self.metric = task.metric if output is not None else "val_loss"
        self.higher_is_better = task.higher_is_better if output is not None else False

    def loss(self, outputs: Any, targets: torch.Tensor) -> torch.Tensor:
        return self.fn(outputs, targets)

    def _picked(self, outputs: Any) -> torch.Tensor | None:
        if self.output is None:
            return outputs if isinstance(outputs, torch.Tensor) else None
        if isinstance(outputs, dict):
            return outputs[self.output]
        return outputs[int(self.output)]

    def sums(self, outputs: Any, targets: torch.Tensor) -> torch.Tensor:
        n = float(len(targets))
        own = torch.stack(
            [self.fn(outputs, targets).double() * n, torch.tensor(n, dtype=torch.float64, device=targets.device)]
        )
        picked = self._picked(outputs)
        return own if picked is None else torch.cat([own, self.task.sums(picked, targets)])

    def figures(self, sums: list[float]) -> dict[str, Any]:
        loss, n = sums[:2]
        figures = self.task.figures(sums[2:]) if len(sums) > 2 else {}
        return {**figures, "val_loss": loss / max(n, 1.0)}


def user_loss(cfg: LossCfg) -> Callable[[Any, torch.Tensor], torch.Tensor]:
    """The callable `loss.target` names: a function (given `loss.kwargs` as keywords), or an nn.Module class
    built with them."""
    fn = targets.resolve("loss.target", cfg.target, "a loss function or an nn.Module class")
    kwargs = dict(cfg.kwargs)
    if isinstance(fn, type):
        return targets.call("loss.target", cfg.target, kwargs, "a loss function or an nn.Module class")
    return functools.partial(fn, **kwargs) if kwargs else fn


def for_spec(spec: DataSpec, loss: LossCfg | None = None) -> Task:
    builders = {"classification": lambda: Classification(spec.num_outputs), "regression": Regression}
    task = builders[spec.task]()
    if loss is None or not loss.target:
        return task
    return UserLoss(task, user_loss(loss), loss.output)
