"""speedlab: what each PyTorch speed lever buys on your model and hardware, and whether it broke accuracy.

From Python: `speedlab.bench(model, example_inputs, ...)`, `speedlab.train(*overrides)`, `speedlab.export(...)`
(see `speedlab.api` and docs/python-api.md); imported on first use, so `import speedlab` stays light.
"""

from typing import Any

__version__ = "0.1.0"
SCHEMA_VERSION = 2  # of result.json: raised when a field changes meaning or goes away
_API = ("bench", "train", "export")


def __getattr__(name: str) -> Any:
    """`speedlab.bench` and the others before their packages are imported: importing one makes it callable (see
    `speedlab.callable`), and the import system sets it as this package's attribute."""
    if name in _API:
        import importlib

        return importlib.import_module(f"speedlab.{name}")
    raise AttributeError(f"module 'speedlab' has no attribute {name!r}")
