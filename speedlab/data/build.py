"""The data layer's entry points for the rest of speedlab: what a config's source declares, and its loaders.

Every source is a plug-in (`speedlab/data/sources/`); nothing here knows one by name.
"""

from __future__ import annotations

from typing import Any

import torch

from speedlab.config import DataCfg
from speedlab.data import sources
from speedlab.data.loaders import DataBundle, LoadOptions
from speedlab.data.spec import DataSpec
from speedlab.errors import SpeedlabError


def describe(cfg: DataCfg) -> DataSpec:
    """What the configured source declares (task, input shape, outputs, normalisation), without loading any data:
    bench and profile need no more, and every command checks it before long work."""
    return sources.source(cfg).spec(cfg)


def build_data(
    cfg: DataCfg,
    *,
    seed: int,
    batch_size: int,
    device: torch.device | str = "cpu",
    eval_batch_size: int | None = None,
    rank: int = 0,
    world: int = 1,
) -> DataBundle:
    """Train and val loaders for `cfg` on `device`; rank/world shard both splits for distributed training."""
    options = LoadOptions(seed, batch_size, eval_batch_size or batch_size, torch.device(device), rank, world)
    bundle = sources.source(cfg).load(cfg, options)
    bundle.info = {"name": cfg.name, **bundle.info}
    return bundle


def prepare(cfg: DataCfg) -> dict[str, Any]:
    """Build what loading the source builds on first use (the decoded cache), and say what was done."""
    source = sources.source(cfg)
    if not hasattr(source, "prepare"):
        raise SpeedlabError(f"data={cfg.name} builds nothing ahead of time (no cache to prepare); it loads as it is")
    return source.prepare(cfg)
