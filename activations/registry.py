"""The registry of named plug-ins: the one implementation behind every plug-in kind (activations here; speedlab's
model families, data sources, step variants, bench backends and export formats extend it in `speedlab.plugins`).

A plug-in registers under a name, optionally with its options' dataclass (its schema); lookups of an unknown name
raise the registry's own error listing the valid names. Plug-ins from other installed packages join through the
entry-point group the registry names (their module registers itself when loaded). Imports nothing from speedlab.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Entry:
    plugin: Any
    schema: type | None


class UnknownPluginError(KeyError):
    """A name that is not registered; its message lists the valid names."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class Registry:
    def __init__(self, kind: str, entry_points: str | None = None) -> None:
        """`kind` names the plug-ins in messages ("activation"); `entry_points` is the entry-point group through
        which other packages add theirs (e.g. `speedlab.activations`)."""
        self.kind, self.entry_points = kind, entry_points
        self._entries: dict[str, Entry] = {}
        self._loaded = False

    def register(self, name: str, schema: type | None = None) -> Callable[[Any], Any]:
        """A decorator registering its class or factory under `name` (with its options' `schema`, if any)."""

        def decorator(obj: Any) -> Any:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self.add(name, obj, schema)
            return obj

        return decorator

    def add(self, name: str, obj: Any, schema: type | None) -> None:
        """Store what `register` decorated (subclasses may store an instance, or check the schema)."""
        self._entries[name] = Entry(obj, schema)

    def load(self) -> None:
        """Load the plug-ins other packages declare (once)."""
        if self.entry_points is not None:
            for point in importlib.metadata.entry_points(group=self.entry_points):
                point.load()

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self._loaded = True
            self.load()

    def names(self) -> list[str]:
        """The registered names, sorted."""
        self._ensure_loaded()
        return sorted(self._entries)

    def entry(self, name: str) -> Entry:
        self._ensure_loaded()
        if name not in self._entries:
            raise self.unknown(name)
        return self._entries[name]

    def get(self, name: str) -> Any:
        """The plug-in registered as `name`."""
        return self.entry(name).plugin

    def unknown(self, name: str) -> Exception:
        """The error for an unregistered name, listing the valid ones."""
        return UnknownPluginError(f"unknown {self.kind} {name!r}; valid names: {', '.join(self.names())}")
