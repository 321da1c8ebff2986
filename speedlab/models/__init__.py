"""Model families, one module each in this package, registered by name with their own config schema.

A family is a class decorated with `@register("name", SchemaCfg)` whose methods take the family's typed config and
what the data declares (`DataSpec`: input shape, number of outputs, task):

- `check(cfg, spec)`: every check `build` makes that needs no weights (run before any long work);
- `build(cfg, spec)`: a freshly initialised `nn.Module` on the CPU (initialisation draws from torch's global RNG);
- optionally `label(cfg)`: what the summary's "Changes" column says of this config (default: a swapped activation).

Every module in this package is imported on first use, so adding a family is adding its file plus its
`conf/model/<name>.yaml`; `model=<name>` then selects it, and the tests parametrize over `names()`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Protocol

from torch import nn

from speedlab import checkpoint, config
from speedlab.config import ModelCfg
from speedlab.data.spec import DataSpec
from speedlab.errors import SpeedlabError
from speedlab.plugins import Registry


class Family(Protocol):
    def check(self, cfg: Any, spec: DataSpec) -> None: ...

    def build(self, cfg: Any, spec: DataSpec) -> nn.Module: ...


_REGISTRY = Registry("model family", "model", __name__, __path__)
register = _REGISTRY.register
names = _REGISTRY.names


def schema(name: str) -> type[ModelCfg]:
    return _REGISTRY.entry(name).schema


def _family(cfg: ModelCfg) -> Family:
    return _REGISTRY.for_config(cfg)


def check(cfg: ModelCfg, spec: DataSpec) -> None:
    """Every check `build` makes that needs no weights: run it before any long work."""
    _family(cfg).check(cfg, spec)


def build(cfg: ModelCfg, spec: DataSpec) -> nn.Module:
    """A freshly initialised model of `cfg`'s family for `spec`'s inputs and outputs, on the CPU."""
    family = _family(cfg)
    family.check(cfg, spec)
    return family.build(cfg, spec)


def label(cfg: ModelCfg) -> str | None:
    """What the "Changes" column says about the model: the family's own label, else the activation when it differs
    from the family's default (a swap, as in the reference's rows), else nothing."""
    family = _family(cfg)
    if hasattr(family, "label"):
        return family.label(cfg)
    activation = getattr(cfg, "activation", None)
    default = next((f.default for f in dataclasses.fields(cfg) if f.name == "activation"), None)
    return str(activation) if activation is not None and str(activation) != str(default) else None


def activation(cfg: ModelCfg) -> str | None:
    """The registered activation the model swaps in, or None for families that bring their own."""
    value = getattr(cfg, "activation", None)
    return None if value is None else str(value)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def config_from_record(values: dict[str, Any], what: str) -> ModelCfg:
    """A family's typed config from its plain form (a checkpoint's or result.json's `model_config`)."""
    name = values.get("name")
    if not isinstance(name, str):
        raise SpeedlabError(f"{what} names no model family")
    return config.structured(schema(name), values, what)


def from_checkpoint(state: dict[str, Any], path: Path) -> tuple[nn.Module, ModelCfg, DataSpec]:
    """The model a checkpoint holds, built from the checkpoint's own family, config and data declaration, with its
    weights loaded; a state dict that does not fit gives speedlab's message naming the differing keys."""
    cfg = config_from_record(state["model_config"], f"checkpoint {path}'s model config")
    spec = DataSpec.from_record(state["data_spec"])
    model = build(cfg, spec)
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
    path = checkpoint.find(setting, key=key)
    state = checkpoint.load(path)
    diffs = checkpoint.differences(state, run_model, None)
    if diffs and explicit:
        raise SpeedlabError(
            f"checkpoint {path} is from a different model than this run's model settings:\n  "
            + "\n  ".join(diffs)
            + "\n(the checkpoint decides the model: drop the model overrides, or give another checkpoint)"
        )
    model, cfg, spec = from_checkpoint(state, path)
    notes = [f"model from the checkpoint ({', '.join(diffs)} in this run's config, ignored)"] if diffs else []
    return Trained(model, cfg, spec, path, state, notes)
