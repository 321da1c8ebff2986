"""speedlab's plug-in registry: the shared `activations.registry.Registry` (the one implementation behind every
plug-in kind) extended for the kinds inside speedlab, each a package of one module per plug-in: model families, data
sources, step variants, bench backends and export formats. `@registry.register("name")` on a plug-in's class
registers an instance of it; families and sources also store their config schema where `conf/<group>/<name>.yaml`
composes it, and backends bring their options' dataclass. A package's modules are imported on first use, so adding
a plug-in is adding its file. Plug-ins from other packages join through the entry-point group named like the
package (e.g. `speedlab.models`), loaded with the package's own."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from typing import Any

from activations.registry import Entry
from activations.registry import Registry as BaseRegistry
from speedlab import config
from speedlab.errors import SpeedlabError

__all__ = ["Entry", "Registry"]


class Registry(BaseRegistry):
    def __init__(self, kind: str, package: str, path: Iterable[str], group: str | None = None) -> None:
        """`kind` names the plug-ins in messages ("model family"); `group` is the config group whose schemas the
        plug-ins bring (`model`, `data`), None for kinds without one."""
        super().__init__(kind, entry_points=package)
        self.group, self.package, self.path = group, package, list(path)

    def add(self, name: str, obj: Any, schema: type | None) -> None:
        if self.group is not None:
            if schema is None or getattr(schema, "name", None) != name:
                raise ValueError(f"{self.kind} {name!r} needs a schema whose name defaults to {name!r}")
            config.register_schema(self.group, name, schema)
        super().add(name, obj(), schema)

    def load(self) -> None:
        for module in pkgutil.iter_modules(self.path):
            if not module.name.startswith("_"):
                importlib.import_module(f"{self.package}.{module.name}")
        super().load()

    def unknown(self, name: str) -> Exception:
        return SpeedlabError(f"unknown {self.kind} {name!r}; valid: {', '.join(self.names())}")

    def for_config(self, cfg: Any) -> Any:
        """The plug-in a typed config selects. Its `name` must be the one whose schema the group chose: setting
        `model.name=mlp` on ConvNeXt's settings would otherwise hand one plug-in another's config."""
        entry = self.entry(cfg.name)
        if entry.schema is not None and not isinstance(cfg, entry.schema):
            raise SpeedlabError(
                f"{self.group}.name={cfg.name} does not match the chosen {self.kind}'s settings "
                f"({type(cfg).__name__}); choose a {self.kind} with the group, e.g. {self.group}={cfg.name}, and "
                f"leave {self.group}.name alone"
            )
        return entry.plugin
