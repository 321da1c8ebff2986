"""The parity command line: shared overrides and Hydra flags, then each side's overrides after `--a` and `--b`.
Import-light (the dispatcher reads it before the command's process starts)."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from speedlab.errors import SpeedlabError

SIDE_FLAGS = {"--a": "a", "--b": "b"}
# The sides reach the parity process in this environment variable (JSON), so Hydra's own argv holds only the shared
# overrides and flags.
SIDES_ENV = "SPEEDLAB_PARITY_SIDES"


def split_argv(argv: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    """The shared arguments (overrides and Hydra flags) and each side's overrides, which follow `--a` / `--b`."""
    parts: dict[str, list[str]] = {"shared": [], "a": [], "b": []}
    current = "shared"
    for arg in argv:
        if arg in SIDE_FLAGS:
            if parts[SIDE_FLAGS[arg]]:
                raise SpeedlabError(f"{arg} given twice: put all of that side's overrides after one {arg}")
            current = SIDE_FLAGS[arg]
        elif arg.startswith("-") and current != "shared":
            raise SpeedlabError(
                f"flag {arg!r} after --{current}: the sides take overrides only; put Hydra flags before --a"
            )
        elif current != "shared" and arg.lstrip("+~").startswith(("parity.", "hydra.")):
            raise SpeedlabError(f"{arg!r} after --{current}: parity.* and hydra.* settings belong to the whole "
                                "comparison; put them before --a")  # fmt: skip
        else:
            parts[current].extend(shlex.split(arg) if current != "shared" and " " in arg else [arg])
    return parts["shared"], parts["a"], parts["b"]
