"""Training checkpoints, shared by every command: written atomically, read with `torch.load(weights_only=True)`,
checked against a run's model config and data, and turned back into the trained model (`load_trained`: the model
layer itself does no I/O).

A checkpoint holds the model (the plain module's state_dict, so compiled and DDP runs share checkpoints), the
optimizer and GradScaler state, the number of completed epochs, the RNG states, the per-epoch history, the resolved
config, and what a command needs to rebuild the model without the training run's config: the family's config
(`model_config`) and the data's declaration (`data_spec`: task, input shape, outputs).
"""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from speedlab import config, models, record, targets
from speedlab.config import ModelCfg
from speedlab.data.spec import DataSpec
from speedlab.errors import SpeedlabError
from speedlab.fsutil import atomic_path

FORMAT = 2  # 2: model_config names its family, and data_spec declares the data (format 1 had num_classes only)
# Keys of the model config that do not change the weights' shapes or meaning on resume.
_IGNORED_MODEL_KEYS = {"init"}
_SPEC_KEYS = ("task", "input_shape", "num_outputs")


def rng_states() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def find(path: str | Path, key: str) -> Path:
    """A checkpoint given as the file itself or as the run directory that holds it; `key` names the setting."""
    path = Path(path).expanduser()
    candidate = record.checkpoint_path(path) if path.is_dir() else path
    if not candidate.is_file():
        where = f"{path} holds no {record.CHECKPOINT_FILE}" if path.is_dir() else f"{path} does not exist"
        raise SpeedlabError(f"{key}={path}: {where} (give a checkpoint file or a train run directory)")
    return candidate


def save(path: Path, state: dict[str, Any]) -> None:
    """Write `state` so that a crash or Ctrl-C mid-write leaves the previous checkpoint intact. The history may come
    as a JSON string (`RecordLines.array`), which load() turns back into a list: torch.save pickles a list of
    10,000 epoch records far slower than it stores one string."""
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save({"format": FORMAT, **state}, tmp)


def load(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # weights_only refuses any pickled object beyond tensors and plain data: loading one could run its code.
        first = str(err).strip().splitlines()[0][:200]
        raise SpeedlabError(
            f"refused checkpoint {path}: it holds pickled objects other than tensors and plain data ({first}); "
            "speedlab never writes such a file, and loading it could run code from it"
        ) from None
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise SpeedlabError(
            f"cannot read checkpoint {path}: {type(err).__name__}: {str(err).strip()[:300]} (truncated or not a "
            "checkpoint; resume from an earlier one, or train again)"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else None
        raise SpeedlabError(
            f"{path} is not a speedlab training checkpoint of format {FORMAT} (found format {found}); "
            "train it again with this version"
        )
    if isinstance(state.get("history"), str):
        state["history"] = json.loads(state["history"])
    return state


def differences(state: dict[str, Any], model_cfg: dict[str, Any], spec: DataSpec | None) -> list[str]:
    """Each key where the checkpoint's model config or data declaration differs from a run's, as readable text."""
    saved = {k: v for k, v in state["model_config"].items() if k not in _IGNORED_MODEL_KEYS}
    current = {k: v for k, v in model_cfg.items() if k not in _IGNORED_MODEL_KEYS}
    diffs = [f"model.{k}: checkpoint {saved.get(k)!r}, this run {current.get(k)!r}"
             for k in sorted(saved.keys() | current.keys()) if saved.get(k) != current.get(k)]  # fmt: skip
    if spec is not None:
        theirs, ours = state["data_spec"], spec.record()
        diffs += [f"data {k}: checkpoint {theirs[k]!r}, this run's data {ours[k]!r}"
                  for k in _SPEC_KEYS if theirs[k] != ours[k]]  # fmt: skip
    return diffs


def check_model(state: dict[str, Any], path: Path, model_cfg: dict[str, Any], spec: DataSpec | None) -> None:
    """Fail, naming each differing key, when the checkpoint was trained with another model config or data shape."""
    diffs = differences(state, model_cfg, spec)
    if diffs:
        raise SpeedlabError(f"checkpoint {path} is from a different model:\n  " + "\n  ".join(diffs))


def config_from_record(values: dict[str, Any], what: str) -> ModelCfg:
    """A family's typed config from its plain form (a checkpoint's or result.json's `model_config`)."""
    name = values.get("name")
    if not isinstance(name, str):
        raise SpeedlabError(f"{what} names no model family")
    return config.structured(models.schema(name), values, what)


def from_checkpoint(state: dict[str, Any], path: Path) -> tuple[nn.Module, ModelCfg, DataSpec]:
    """The model a checkpoint holds, built from the checkpoint's own family, config and data declaration, with its
    weights loaded; a state dict that does not fit gives speedlab's message naming the differing keys."""
    cfg = config_from_record(state["model_config"], f"checkpoint {path}'s model config")
    spec = DataSpec.from_record(state["data_spec"])
    model = models.build(cfg, spec)
    load_weights(model, state["model"], path)
    return model, cfg, spec


def load_weights(model: nn.Module, weights: dict[str, Any], path: Path) -> None:
    """Load a state dict, failing with the missing, unexpected and differently shaped keys named."""
    own = model.state_dict()
    missing = sorted(own.keys() - weights.keys())
    unexpected = sorted(weights.keys() - own.keys())
    shapes = [
        f"{k}: checkpoint {tuple(weights[k].shape)}, model {tuple(own[k].shape)}"
        for k in sorted(own.keys() & weights.keys())
        if tuple(own[k].shape) != tuple(weights[k].shape)
    ]
    problems = [
        *(["missing from the checkpoint: " + ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")]
          if missing else []),
        *(["not in the model: " + ", ".join(unexpected[:8]) + (" ..." if len(unexpected) > 8 else "")]
          if unexpected else []),
        *shapes[:8],
    ]  # fmt: skip
    if problems:
        raise SpeedlabError(f"checkpoint {path}'s weights do not fit the model:\n  " + "\n  ".join(problems))
    model.load_state_dict(weights)


@dataclasses.dataclass
class Trained:
    """A model loaded from a checkpoint, with the config and data declaration it was trained with."""

    model: nn.Module
    cfg: ModelCfg
    spec: DataSpec
    path: Path
    state: dict[str, Any]
    notes: list[str]


def load_trained(setting: str, key: str, run_model: dict[str, Any], explicit: bool) -> Trained:
    """The trained model of the checkpoint `setting` (a file or train run directory; `key` names the setting).

    The checkpoint decides the family, its config and the data's shape, so a command runs what was trained. When
    the command line also set model keys (`explicit`), they must agree with the checkpoint; otherwise the run's own
    model settings are ignored and each difference becomes a note."""
    path = find(setting, key=key)
    state = load(path)
    diffs = differences(state, run_model, None)
    if diffs and explicit:
        raise SpeedlabError(
            f"checkpoint {path} is from a different model than this run's model settings:\n  "
            + "\n  ".join(diffs)
            + "\n(the checkpoint decides the model: drop the model overrides, or give another checkpoint)"
        )
    model, cfg, spec = from_checkpoint(state, path)
    notes = []
    if state["model_config"].get("name") != run_model.get("name"):
        notes.append(f"model from the checkpoint: model={state['model_config'].get('name')} "
                     f"(this run's model={run_model.get('name')} settings ignored)")  # fmt: skip
    elif diffs:
        notes.append(f"model from the checkpoint ({', '.join(diffs)} in this run's config, ignored)")
    notes += targets.changed(state.get("code") or {})
    return Trained(model, cfg, spec, path, state, notes)
