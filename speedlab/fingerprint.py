"""Config fingerprints: what makes two measurements comparable, so `report` never merges runs that differ in
anything that changes speed and `compare` pairs a cell or run only with its own kind.

A fingerprint has three parts, each a flat `{"dotted.key": value}` map:
- `config`: the measured workload and its levers: the model and its config (and parameter count), the data's
  shape and sizes, batch size, epochs, precision, the levers, and for a bench cell its backend with that backend's
  own options. Left out: names, seeds, paths, tracking and monitoring, timing knobs, checkpointing, and (for a cell)
  the sweep's other backends, batch sizes and precisions.
- `env`: where it ran: the device (GPU name, or CPU model and the cores the process could use), torch and speedlab
  versions.
- `commit`: the code (git commit, `+dirty` when the tree was).
`report` groups on all three; `compare` pairs on `config` alone (its two sides are usually two commits, sometimes
two machines) and states any difference of `env` or `commit` in its first lines.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from speedlab import results

# Config keys that never change the speed of what is measured.
NOT_SPEED = ("name", "seed", "tracking", "monitor", "resume", "weights", "source", "device",
             "trainer.save_checkpoints", "trainer.eval_every", "hydra")  # fmt: skip
# A key whose last part says it is a location, not a setting.
PATH_PARTS = ("root", "dir", "path", "cache_dir", "export_dir", "file")
# What bench settings say about how to measure, not what: a cell's speed does not depend on them.
BENCH_HARNESS = ("bench.backends", "bench.batch_sizes", "bench.precisions", "bench.concurrency", "bench.warmup_iters",
                 "bench.warmup_min_s", "bench.min_iters", "bench.min_time_s", "bench.repeats",
                 "bench.cell_timeout_s", "bench.host_to_device", "bench.input_shape")  # fmt: skip
# The training levers (`train/levers.changes_label` names them): a speed-up compares runs that differ only here.
LEVERS = ("compile", "amp", "trainer.channels_last", "trainer.cudnn_benchmark", "trainer.tf32", "trainer.step",
          "trainer.threads", "trainer.reuse_memory", "trainer.onednn", "optim.fused", "optim.foreach",
          "model.depthwise", "model.activation", "model.conv", "data.feed", "data.workers", "data.pin_memory",
          "data.prefetch_factor")  # fmt: skip


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` as `{"a.b": 1}`; lists stay values."""
    if not isinstance(tree, dict):
        return {prefix: tree} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def _speed_config(result: dict[str, Any]) -> dict[str, Any]:
    flat = flatten(result.get("config") or {})
    return {k: v for k, v in flat.items() if not _under(k, NOT_SPEED) and k.rsplit(".", 1)[-1] not in PATH_PARTS}


@dataclass(frozen=True)
class Fingerprint:
    kind: str  # "train" or "bench"
    config: dict[str, Any]
    env: dict[str, Any]
    commit: str

    def key(self, env: bool = True, commit: bool = True) -> str:
        parts = [self.kind, self.config, self.env if env else None, self.commit if commit else None]
        return json.dumps(parts, sort_keys=True, default=str)

    def workload(self) -> dict[str, Any]:
        """Everything but the levers, flat: the Vanilla a lever's speed-up is taken against has this same map."""
        rest = {k: v for k, v in self.config.items() if not _under(k, LEVERS)}
        return {**rest, **{f"env.{k}": v for k, v in self.env.items()}, "commit": self.commit}

    def workload_key(self) -> str:
        return json.dumps([self.kind, self.workload()], sort_keys=True, default=str)


def environment(result: dict[str, Any]) -> dict[str, Any]:
    env = result.get("env") or {}
    return {"machine": results.machine_name(result), "torch": env.get("torch"),
            "speedlab": result.get("speedlab_version")}  # fmt: skip


def of_train(result: dict[str, Any]) -> Fingerprint:
    """A training run's fingerprint."""
    config = {**_speed_config(result), "params": result.get("params")}
    return Fingerprint("train", config, environment(result), results.commit(result))


def of_cell(result: dict[str, Any], row: dict[str, Any]) -> Fingerprint:
    """The fingerprint of one cell (backend, precision, batch size) of a bench run."""
    backends = set((result.get("config") or {}).get("bench", {}).get("backends") or []) | {row["backend"]}
    config = {
        k: v for k, v in _speed_config(result).items()
        if not _under(k, BENCH_HARNESS) and not _under(k, tuple(f"bench.{b}" for b in backends - {row["backend"]}))
    }  # fmt: skip
    config.update(backend=row["backend"], precision=row["precision"], batch_size=row["batch_size"],
                  concurrency=row.get("concurrency", 1),
                  params=result.get("params"), input_shape=result.get("input_shape"),
                  model_file=(result.get("model_file") or {}).get("kind"))  # fmt: skip
    return Fingerprint("bench", config, environment(result), results.commit(result))


def differences(a: dict[str, Any], b: dict[str, Any], limit: int = 4) -> list[str]:
    """The keys where two flat maps differ, as `key: A vs B` (the first `limit`, then how many more)."""
    keys = sorted(k for k in a.keys() | b.keys() if a.get(k, "(unset)") != b.get(k, "(unset)"))
    shown = [f"{k}: {a.get(k, '(unset)')} vs {b.get(k, '(unset)')}" for k in keys[:limit]]
    return shown + ([f"and {len(keys) - limit} more"] if len(keys) > limit else [])
