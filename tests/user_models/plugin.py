"""Plug-ins from a package other than speedlab, as a user's package registers them through entry points
(`speedlab.models`, `speedlab.bench.backends`): a model family with its own settings, and a bench backend."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from speedlab.bench.backends import BenchSetup, Prepared
from speedlab.bench.backends import register as register_backend
from speedlab.config import ModelCfg
from speedlab.data.spec import DataSpec
from speedlab.models import register as register_family


@dataclass
class UserMlpCfg(ModelCfg):
    name: str = "user_mlp"
    width: int = 32  # hidden units


@register_family("user_mlp", UserMlpCfg)
class UserMlp:
    def check(self, cfg: UserMlpCfg, spec: DataSpec) -> None:
        pass

    def build(self, cfg: UserMlpCfg, spec: DataSpec) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(spec.features, cfg.width), nn.ReLU(),
                             nn.Linear(cfg.width, spec.num_outputs))  # fmt: skip

    def label(self, cfg: UserMlpCfg) -> str:
        return f"user_mlp {cfg.width}"


@register_backend("user_eager")
class UserEager:
    name = "user_eager"

    def unsupported(self, setup: BenchSetup, precision: str) -> str | None:
        return None if precision == "fp32" else "fp32 only"

    def prepare(self, setup: BenchSetup, batch_size: int, precision: str) -> Prepared:
        inputs, start = setup.inputs(batch_size), time.perf_counter()

        def run() -> torch.Tensor:
            with torch.inference_mode():
                return setup.model(inputs)

        return Prepared(run=run, setup_s=time.perf_counter() - start)
