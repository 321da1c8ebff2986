"""Data sources, one module each in this package, registered by name with their own config schema.

A source is a class decorated with `@register("name", SchemaCfg)` whose methods take the source's typed config:

- `spec(cfg)`: what it declares (`DataSpec`: task, input shape, number of outputs, normalisation). Cheap: it checks
  the config and may read an index file, but never decodes data; bench and profile need nothing more;
- `load(cfg, options)`: both splits' loaders on the device (`DataBundle`), every check that can fail done before
  the first batch;
- optionally `prepare(cfg)`: build what `load` would build on first use (the decoded cache), for `data prepare`.

Every module in this package is imported on first use, so adding a source is adding its file plus its
`conf/data/<name>.yaml`; `data=<name>` then selects it, and the tests parametrize over `names()`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from speedlab import config
from speedlab.config import DataCfg
from speedlab.data.loaders import DataBundle, LoadOptions
from speedlab.data.spec import DataSpec
from speedlab.errors import SpeedlabError


class Source(Protocol):
    def spec(self, cfg: Any) -> DataSpec: ...

    def load(self, cfg: Any, options: LoadOptions) -> DataBundle: ...


@dataclass(frozen=True)
class _Entry:
    source: Source
    schema: type[DataCfg]


_REGISTRY: dict[str, _Entry] = {}
_LOADED = False


def register(name: str, schema: type[DataCfg]) -> Callable[[type], type]:
    """Register a source class under `name`, with `schema` (a DataCfg subclass whose `name` defaults to `name`)."""

    def decorator(cls: type) -> type:
        if name in _REGISTRY:
            raise ValueError(f"data source {name!r} is registered twice")
        if schema.name != name:
            raise ValueError(f"{schema.__name__}.name defaults to {schema.name!r}, not the source's name {name!r}")
        _REGISTRY[name] = _Entry(cls(), schema)
        config.register_schema("data", name, schema)
        return cls

    return decorator


def _load() -> None:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        for module in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{module.name}")


def names() -> list[str]:
    """The registered sources, sorted."""
    _load()
    return sorted(_REGISTRY)


def source(cfg: DataCfg) -> Source:
    _load()
    entry = _REGISTRY.get(cfg.name)
    if entry is None:
        raise SpeedlabError(f"unknown data source {cfg.name!r}; valid sources: {', '.join(names())}")
    if not isinstance(cfg, entry.schema):
        raise SpeedlabError(
            f"data.name={cfg.name} does not match the chosen source's settings ({type(cfg).__name__}); choose a "
            f"source with the group, e.g. data={cfg.name}, and leave data.name alone"
        )
    return entry.source
