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

from typing import Any, Protocol

from speedlab.config import DataCfg
from speedlab.data.loaders import DataBundle, LoadOptions
from speedlab.data.spec import DataSpec
from speedlab.plugins import Registry


class Source(Protocol):
    def spec(self, cfg: Any) -> DataSpec: ...

    def load(self, cfg: Any, options: LoadOptions) -> DataBundle: ...


_REGISTRY = Registry("data source", __name__, __path__, group="data")
register = _REGISTRY.register
names = _REGISTRY.names


def source(cfg: DataCfg) -> Source:
    """The source a typed data config selects."""
    return _REGISTRY.for_config(cfg)
