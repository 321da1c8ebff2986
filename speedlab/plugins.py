"""The one registry implementation of speedlab's plug-in kinds: model families, data sources, step variants, bench
backends and export formats. Each plug-in is one module in its kind's package plus one `@registry.register("name")`
on its class, which registers an instance of it (and, for families and sources, stores its config schema where
`conf/<group>/<name>.yaml` composes it). A package's modules are imported on first use, so adding a plug-in is adding
its file. Plug-ins from other packages join through the entry-point group `speedlab.<kind package>` (e.g.
`speedlab.models`), loaded with the package's own."""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from speedlab import config
from speedlab.errors import SpeedlabError


@dataclass(frozen=True)
class Entry:
    plugin: Any
    schema: type | None


class Registry:
    def __init__(self, kind: str, package: str, path: Iterable[str], group: str | None = None) -> None:
        """`kind` names the plug-ins in messages ("model family"); `group` is the config group whose schemas the
        plug-ins bring (`model`, `data`), None for kinds without one."""
        self.kind, self.group, self.package, self.path = kind, group, package, list(path)
        self._entries: dict[str, Entry] = {}
        self._loaded = False

    def register(self, name: str, schema: type | None = None) -> Callable[[type], type]:
        """Register a plug-in class under `name`; a kind with a config group also takes the class's `schema`
        (whose `name` field defaults to `name`)."""

        def decorator(cls: type) -> type:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            if self.group is not None:
                if schema is None or getattr(schema, "name", None) != name:
                    raise ValueError(f"{self.kind} {name!r} needs a schema whose name defaults to {name!r}")
                config.register_schema(self.group, name, schema)
            self._entries[name] = Entry(cls(), schema)
            return cls

        return decorator

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in pkgutil.iter_modules(self.path):
            if not module.name.startswith("_"):
                importlib.import_module(f"{self.package}.{module.name}")
        for point in importlib.metadata.entry_points(group=self.package):
            point.load()  # the other package's module registers itself on import

    def names(self) -> list[str]:
        """The registered names, sorted."""
        self._load()
        return sorted(self._entries)

    def entry(self, name: str) -> Entry:
        self._load()
        if name not in self._entries:
            raise SpeedlabError(f"unknown {self.kind} {name!r}; valid: {', '.join(self.names())}")
        return self._entries[name]

    def get(self, name: str) -> Any:
        """The registered plug-in `name`; an unknown name raises SpeedlabError naming the valid ones."""
        return self.entry(name).plugin

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
