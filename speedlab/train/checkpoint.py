"""Training checkpoints: written atomically, read with `torch.load(weights_only=True)`, checked against the run.

A checkpoint holds the model (the plain module's state_dict, so compiled and DDP runs share checkpoints), the
optimizer and GradScaler state, the number of completed epochs, the RNG states, the per-epoch history and the config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from speedlab.errors import SpeedlabError
from speedlab.fsutil import atomic_path

FORMAT = 1
# Keys of the model config that do not change the weights' shapes or meaning on resume.
_IGNORED_MODEL_KEYS = {"init"}


def rng_states() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save(path: Path, state: dict[str, Any]) -> None:
    """Write `state` so that a crash or Ctrl-C mid-write leaves the previous checkpoint intact."""
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save({"format": FORMAT, **state}, tmp)


def load(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise SpeedlabError(f"cannot read checkpoint {path}: {type(err).__name__}: {err}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise SpeedlabError(f"{path} is not a speedlab training checkpoint (format {FORMAT})")
    return state


def check_model(state: dict[str, Any], path: Path, model_cfg: dict[str, Any], num_classes: int | None) -> None:
    """Fail, naming each differing key, when the checkpoint was trained with another model config."""
    saved = {k: v for k, v in state["model_config"].items() if k not in _IGNORED_MODEL_KEYS}
    current = {k: v for k, v in model_cfg.items() if k not in _IGNORED_MODEL_KEYS}
    diffs = [f"model.{k}: checkpoint {saved.get(k)!r}, this run {current.get(k)!r}"
             for k in sorted(saved.keys() | current.keys()) if saved.get(k) != current.get(k)]  # fmt: skip
    if num_classes is not None and state["num_classes"] != num_classes:
        diffs.append(f"num_classes: checkpoint {state['num_classes']}, this run's data {num_classes}")
    if diffs:
        raise SpeedlabError(f"checkpoint {path} is from a different model:\n  " + "\n  ".join(diffs))
