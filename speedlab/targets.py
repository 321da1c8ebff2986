"""The user's own code by import path: a model, a data set or a loss named as Hydra's `_target_` names a callable.

`resolve(key, target)` imports `PKG.MODULE.ATTR` (or `PKG.MODULE:ATTR`) from the user's environment (an installed
package, or the current directory and `PYTHONPATH`) and returns the attribute; `call(key, target, kwargs)` calls it.
Every failure is one SpeedlabError naming the config key, the target and Python's own reason, raised before any long
work. `source_hash(target)` fingerprints the module's source, so a checkpoint can tell when the code it was trained
with has changed since.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from speedlab.errors import SpeedlabError


def split(target: str) -> tuple[str, str]:
    """(module, attribute) of `PKG.MODULE.ATTR` or `PKG.MODULE:ATTR`."""
    module_name, _, attr = target.partition(":") if ":" in target else target.rpartition(".")
    return module_name, attr


def _import(key: str, target: str) -> Any:
    module_name, attr = split(target)
    if not module_name or not attr:
        raise SpeedlabError(f"{key}={target!r}: give PKG.MODULE.ATTR (or PKG.MODULE:ATTR)")
    # `python -m` puts the current directory first on sys.path; a console script does not: add it, as Hydra does.
    if str(Path.cwd()) not in sys.path and "" not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(module_name)
    except Exception as err:  # noqa: BLE001 - any error in the user's module is reported, not raised deep inside
        raise SpeedlabError(f"{key}={target!r}: cannot import {module_name!r}: "
                            f"{type(err).__name__}: {err}") from None  # fmt: skip


def resolve(key: str, target: str, what: str = "a class or function") -> Callable[..., Any]:
    """The callable `target` names, imported; one error naming `key`, the module and Python's reason when it cannot
    be. `what` says what was expected, for the error."""
    if not target:
        raise SpeedlabError(f"{key} is empty: give PKG.MODULE.ATTR, {what} to call")
    module = _import(key, target)
    module_name, attr = split(target)
    try:
        obj = getattr(module, attr)
    except AttributeError:
        names = ", ".join(n for n in dir(module) if not n.startswith("_"))
        raise SpeedlabError(f"{key}={target!r}: module {module_name!r} has no {attr!r}; it has: {names}") from None
    if not callable(obj):
        raise SpeedlabError(f"{key}={target!r} is a {type(obj).__name__}, not {what}")
    return obj


def call(key: str, target: str, kwargs: dict[str, Any], what: str = "a class or function") -> Any:
    """`target(**kwargs)`; kwargs it rejects are one error carrying its own message."""
    factory = resolve(key, target, what)
    try:
        return factory(**kwargs)
    except TypeError as err:  # the callable rejects the kwargs: its own message says which
        raise SpeedlabError(f"{key}={target!r} with kwargs {kwargs}: {err}") from None


def fingerprints(resolved: dict[str, Any]) -> dict[str, str | None]:
    """`{key: source hash}` of every user target a resolved config names (model, data, loss): what a checkpoint
    records, so loading it later can tell the code has changed."""
    found = {}
    for section in ("model", "data", "loss"):
        target = (resolved.get(section) or {}).get("target")
        if target:
            found[f"{section}.target={target}"] = source_hash(target)
    return found


def changed(recorded: dict[str, str | None]) -> list[str]:
    """Each recorded target whose module's source differs today (or is gone), as a readable note."""
    notes = []
    for key, then in recorded.items():
        now = source_hash(key.split("=", 1)[1])
        if then is not None and now != then:
            notes.append(f"{key}: its module's source changed since the checkpoint was saved (sha256 {then} then, "
                         f"{now or 'unreadable'} now); the weights were loaded into today's code")  # fmt: skip
    return notes


def source_hash(target: str) -> str | None:
    """SHA-256 (first 16 hex digits) of the source file of the module `target` lives in; None when it has none."""
    try:
        module = importlib.import_module(split(target)[0])
        text = inspect.getsource(module)
    except (ImportError, OSError, TypeError):
        return None
    return hashlib.sha256(text.encode()).hexdigest()[:16]
