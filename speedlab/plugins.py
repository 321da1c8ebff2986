"""A registry of plug-ins that are one module each in a package and bring their own config schema (model families,
data sources): `@registry.register("name", SchemaCfg)` on the plug-in's class registers an instance of it and stores
the schema where `conf/<group>/<name>.yaml` composes it. The package's modules are imported on first use, so adding
a plug-in is adding its file (and its YAML)."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from speedlab import config
from speedlab.errors import SpeedlabError


@dataclass(frozen=True)
class Entry:
    plugin: Any
    schema: type


class Registry:
    def __init__(self, kind: str, group: str, package: str, path: Iterable[str]) -> None:
        self.kind, self.group, self.package, self.path = kind, group, package, list(path)
        self._entries: dict[str, Entry] = {}
        self._loaded = False

    def register(self, name: str, schema: type) -> Callable[[type], type]:
        """Register a plug-in class under `name`, with `schema` (whose `name` field defaults to `name`)."""

        def decorator(cls: type) -> type:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            if getattr(schema, "name", None) != name:
                raise ValueError(f"{schema.__name__}.name must default to the {self.kind}'s name {name!r}")
            self._entries[name] = Entry(cls(), schema)
            config.register_schema(self.group, name, schema)
            return cls

        return decorator

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in pkgutil.iter_modules(self.path):
                importlib.import_module(f"{self.package}.{module.name}")

    def names(self) -> list[str]:
        """The registered names, sorted."""
        self._load()
        return sorted(self._entries)

    def entry(self, name: str) -> Entry:
        self._load()
        if name not in self._entries:
            raise SpeedlabError(f"unknown {self.kind} {name!r}; valid: {', '.join(self.names())}")
        return self._entries[name]

    def for_config(self, cfg: Any) -> Any:
        """The plug-in a typed config selects. Its `name` must be the one whose schema the group chose: setting
        `model.name=mlp` on ConvNeXt's settings would otherwise hand one plug-in another's config."""
        entry = self.entry(cfg.name)
        if not isinstance(cfg, entry.schema):
            raise SpeedlabError(
                f"{self.group}.name={cfg.name} does not match the chosen {self.kind}'s settings "
                f"({type(cfg).__name__}); choose a {self.kind} with the group, e.g. {self.group}={cfg.name}, and "
                f"leave {self.group}.name alone"
            )
        return entry.plugin
