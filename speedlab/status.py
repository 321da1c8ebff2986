"""The one status vocabulary of everything speedlab records: a run, a bench cell, an export artifact.

Each word means the same wherever it appears (docs/comparing.md has the table):
- `ok`: done, and its checks passed.
- `skipped`: not attempted, because it cannot run here (TensorRT without a GPU, a precision a backend lacks) or has
  nothing to do; the `reason` says which. Never a failure.
- `failed`: ran, and its result is wrong or the run stopped on an error (an export's parity beyond tolerance, a run
  that raised). `error`, `oom` and `timeout` say more precisely why a cell or artifact failed.
- `interrupted`: stopped by the user (Ctrl-C); what finished is kept.
- `running`: still being written; `crashed`: said "running" but its process is gone (only ever read, never written).
"""

from __future__ import annotations

OK, SKIPPED, FAILED, ERROR, OOM, TIMEOUT = "ok", "skipped", "failed", "error", "oom", "timeout"
INTERRUPTED, RUNNING, CRASHED = "interrupted", "running", "crashed"

RUN = (OK, FAILED, INTERRUPTED, SKIPPED)  # what a run writes at its end (`running` while it goes)
CELL = (OK, SKIPPED, ERROR, OOM, TIMEOUT)  # a bench cell
ARTIFACT = (OK, SKIPPED, FAILED, ERROR)  # an export artifact
ALL = (OK, SKIPPED, FAILED, ERROR, OOM, TIMEOUT, INTERRUPTED, RUNNING, CRASHED)
CELL_FAILURES = (ERROR, OOM, TIMEOUT)
ARTIFACT_FAILURES = (FAILED, ERROR)
