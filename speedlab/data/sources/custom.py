"""The `custom` source: the user's own data set, by import path, with no file inside speedlab.

    python -m speedlab train data=custom data.target=mypkg.data.splits data.task=classification

`data.target` names a callable (`PKG.MODULE.ATTR`, or `PKG.MODULE:ATTR`) that, called with `data.kwargs`, returns
`(train, val)`: two map-style datasets (`len()` and `[i]`) whose items are `(input, target)` pairs of tensors (or
numbers / arrays). The first sample declares the data: its input's shape (any rank: a waveform C x L, an image
C x H x W, a token sequence L, a volume) and dtype (integer inputs are ids, for an embedding), and its target's
shape. `data.task` says how to train and evaluate: `classification` (cross-entropy on integer class ids, one per
sample or one per position, e.g. a segmentation map or token labels) or `regression` (mean squared error on float
targets).

Both splits are read once, checked item by item, and kept as tensors (on the device with `data.feed=device`): the
same fast path as the small built-in sources, at the price of holding the data in memory. Inputs are used as the
data set gives them (normalise them there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from tqdm import tqdm

from speedlab import targets
from speedlab.config import Choice, DataCfg, at_least
from speedlab.data import resident
from speedlab.data.loaders import DataBundle, LoadOptions
from speedlab.data.sources import register
from speedlab.data.spec import TASKS, DataSpec
from speedlab.errors import DataError, SpeedlabError

KEY = "data.target"
PROGRESS_ABOVE = 5_000  # items: a progress bar while reading larger splits


Task = Choice("Task", {t: t for t in TASKS})  # the tasks a DataSpec knows, as a config choice


@dataclass
class CustomDataCfg(DataCfg):
    name: str = "custom"
    target: str = ""  # callable returning (train, val) datasets of (input, target) pairs: PKG.MODULE.ATTR
    # Its keyword arguments, e.g. {length: 64}; open to new keys (`data.kwargs.length=64` works too).
    kwargs: Any = field(default_factory=lambda: OmegaConf.create({}, flags={"struct": False}))
    task: Task = Task.classification  # classification: cross-entropy on class ids; regression: mean squared error
    num_outputs: int | None = None  # classes (None: the largest training class id + 1); ignored for regression
    input_high: int | None = None  # integer inputs: ids lie in [0, input_high) (None: the largest id seen + 1)

    def __post_init__(self) -> None:
        super().__post_init__()
        at_least("data.num_outputs", self.num_outputs, 1, optional=True)
        at_least("data.input_high", self.input_high, 1, optional=True)


Splits = dict[str, tuple[torch.Tensor, torch.Tensor]]
_READ: dict[str, Splits] = {}  # per process: describing and loading read the user's data once


def _key(cfg: CustomDataCfg) -> str:
    return repr((cfg.target, sorted(dict(cfg.kwargs).items()), cfg.train_size, cfg.val_size))


def _as_tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    try:
        return torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError) as err:
        raise DataError(f"{what} is a {type(value).__name__}, not a tensor, array or number ({err})") from None


def _item(dataset: Any, i: int, split: str, target: str) -> tuple[torch.Tensor, torch.Tensor]:
    where = f"{KEY}={target!r}: {split} item {i}"
    try:
        item = dataset[i]
    except Exception as err:  # noqa: BLE001 - the user's __getitem__ failing is reported with the item's index
        raise DataError(f"{where} raised {type(err).__name__}: {err}") from None
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        kind = f"a {len(item)}-item {type(item).__name__}" if isinstance(item, (tuple, list)) else type(item).__name__
        raise DataError(f"{where} is {kind}, not an (input, target) pair")
    return _as_tensor(item[0], f"{where}'s input"), _as_tensor(item[1], f"{where}'s target")


def _read_split(dataset: Any, split: str, cap: int | None, target: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Every item of one split (the first `cap`), checked to share the first item's shapes and dtypes, stacked."""
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise DataError(f"{KEY}={target!r}: the {split} split is a {type(dataset).__name__}, not a map-style dataset "
                        "(it needs len() and [i])")  # fmt: skip
    n = len(dataset) if cap is None else min(cap, len(dataset))
    if n == 0:
        raise DataError(f"{KEY}={target!r}: the {split} split is empty")
    first = _item(dataset, 0, split, target)
    inputs, outputs = [first[0]], [first[1]]
    indices = range(1, n)
    for i in tqdm(indices, desc=f"reading {split}", unit="item", leave=False, disable=n < PROGRESS_ABOVE):
        x, y = _item(dataset, i, split, target)
        for name, got, want in (("input", x, first[0]), ("target", y, first[1])):
            if got.shape != want.shape or got.dtype != want.dtype:
                raise DataError(f"{KEY}={target!r}: {split} item {i}'s {name} is {tuple(got.shape)} {got.dtype}, "
                                f"item 0's is {tuple(want.shape)} {want.dtype}: every item must match")  # fmt: skip
        inputs.append(x)
        outputs.append(y)
    return torch.stack(inputs), torch.stack(outputs)


def read(cfg: CustomDataCfg) -> Splits:
    """Both splits of the user's data, read once per process."""
    if not cfg.target:
        raise SpeedlabError("data=custom needs data.target=PKG.MODULE.ATTR: a callable returning (train, val) "
                            "datasets of (input, target) pairs")  # fmt: skip
    key = _key(cfg)
    if key not in _READ:
        made = targets.call(KEY, cfg.target, dict(cfg.kwargs), "a function returning (train, val) datasets")
        if not isinstance(made, (tuple, list)) or len(made) != 2:
            raise SpeedlabError(f"{KEY}={cfg.target!r} returned a {type(made).__name__}, not (train, val) datasets")
        _READ[key] = {
            split: _read_split(ds, split, cap, cfg.target)
            for split, ds, cap in zip(("train", "val"), made, (cfg.train_size, cfg.val_size), strict=True)
        }
    return _READ[key]


def _declare(cfg: CustomDataCfg, splits: Splits) -> DataSpec:
    x, y = splits["train"]
    where = f"{KEY}={cfg.target!r}"
    integer_inputs = not x.dtype.is_floating_point
    if x.dtype == torch.bool or x.is_complex():
        raise DataError(f"{where}: inputs are {x.dtype}; give float inputs, or integer ids for an embedding")
    input_high = None
    if integer_inputs:
        seen = int(max(splits["train"][0].max(), splits["val"][0].max())) + 1
        if int(min(splits["train"][0].min(), splits["val"][0].min())) < 0:
            raise DataError(f"{where}: integer inputs are ids for an embedding and must be >= 0")
        input_high = cfg.input_high or seen
        if seen > input_high:
            raise DataError(f"{where}: an input id {seen - 1} is past data.input_high={cfg.input_high}")
    if str(cfg.task) == "classification":
        if y.dtype.is_floating_point:
            raise DataError(f"{where}: data.task=classification needs integer class ids as targets, got {y.dtype} "
                            "(use data.task=regression for float targets)")  # fmt: skip
        classes = int(splits["train"][1].max()) + 1
        if int(min(splits["train"][1].min(), splits["val"][1].min())) < 0:
            raise DataError(f"{where}: class ids must be >= 0")
        num_outputs = cfg.num_outputs or classes
        if classes > num_outputs:
            raise DataError(f"{where}: class id {classes - 1} is past data.num_outputs={cfg.num_outputs}")
    else:
        if not y.dtype.is_floating_point:
            raise DataError(f"{where}: data.task=regression needs float targets, got {y.dtype} (use "
                            "data.task=classification for class ids)")  # fmt: skip
        num_outputs = max(math.prod(y.shape[1:]), 1)
    return DataSpec(str(cfg.task), tuple(x.shape[1:]), num_outputs, input_dtype=str(x.dtype).removeprefix("torch."),
                    input_high=input_high, target_shape=tuple(y.shape[1:]))  # fmt: skip


@register("custom", CustomDataCfg)
class CustomSource:
    def spec(self, cfg: CustomDataCfg) -> DataSpec:
        return _declare(cfg, read(cfg))

    def load(self, cfg: CustomDataCfg, options: LoadOptions) -> DataBundle:
        splits = read(cfg)
        spec = _declare(cfg, splits)
        train, val = splits["train"], splits["val"]
        if spec.task == "regression":
            train, val = ((x, y.float()) for x, y in (train, val))
        else:
            train, val = ((x, y.long()) for x, y in (train, val))
        info = {"target": cfg.target, "kwargs": dict(cfg.kwargs)}
        return resident.load_tensors(train, val, spec, options, info, resident=str(cfg.feed) == "device")
