"""What training optimises and evaluation reports, per task a source declares (`DataSpec.task`).

- classification: cross-entropy; val loss, top-1 and top-5 accuracy (%);
- regression: mean squared error over every target number; val loss and val MSE (the same figure).

Evaluation accumulates sums on the device (no host sync per batch) and turns them into figures once per pass.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
import torch.nn.functional as F

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
            torch.tensor(float(len(targets)), dtype=torch.float64, device=targets.device),
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


def for_spec(spec: DataSpec) -> Task:
    builders = {"classification": lambda: Classification(spec.num_outputs), "regression": Regression}
    return builders[spec.task]()
