"""The one exception type for bad input and unusable environments (its message is shown to the user as is), and
the one place that turns it, and Ctrl-C, into an exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable


class SpeedlabError(Exception):
    """An error whose message names the bad value and what would be valid; no traceback is shown for it."""


class DataError(SpeedlabError):
    """The dataset is missing, corrupt, or does not match what the configuration asks for."""


def exit_code(run: Callable[[], int]) -> int:
    """`run()`'s exit code, with speedlab's handling of what ends a command early: bad input is one `speedlab:
    error:` line and exit 1 (no traceback), Ctrl-C says so and exits 130."""
    try:
        return run()
    except SpeedlabError as err:
        print(f"speedlab: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("speedlab: interrupted", file=sys.stderr)
        return 130
