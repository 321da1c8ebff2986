"""Command packages that are also functions: `speedlab.bench(model, x)` calls the Python API while
`speedlab.bench.backends` stays the package it is.

`speedlab.bench`, `speedlab.train` and `speedlab.export` are subpackages, so once imported they shadow any function of
that name on `speedlab`. `forward(__name__, "speedlab.api:bench")` in a package's `__init__` makes the package module
callable, forwarding the call to the API function named by its import path: the API sits above the commands and is
looked up by name on first call, as plug-ins are, so the command package never imports the layer above it.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


class CommandModule(types.ModuleType):
    """A package module that can be called: the call goes to `__api__` (`module:function`)."""

    __api__: str

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        module, function = self.__api__.split(":")
        return getattr(importlib.import_module(module), function)(*args, **kwargs)


def forward(name: str, api: str) -> None:
    """Make the (already imported) module `name` callable, forwarding to `api` (`module:function`)."""
    module = sys.modules[name]
    module.__class__ = CommandModule
    module.__api__ = api
