"""Progress output of a training run: tqdm bars on a terminal, one plain line per event otherwise (logs, CI)."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm

MIN_BAR_STEPS = 20


class Progress:
    def __init__(self, enabled: bool = True, interactive: bool | None = None) -> None:
        self.enabled = enabled
        self.interactive = enabled and (sys.stderr.isatty() if interactive is None else interactive)
        self._epochs: tqdm | None = None
        self._batches: tqdm | None = None

    def start_epochs(self, start: int, total: int) -> None:
        if self.interactive:
            self._epochs = tqdm(total=total, initial=start, desc="epochs", unit="epoch", position=0, dynamic_ncols=True)

    def start_batches(self, epoch: int, total_epochs: int, steps: int) -> None:
        # No bar for epochs of a few steps: a bar per one-step epoch would cost more than the step itself.
        if self.interactive and steps >= MIN_BAR_STEPS:
            self._batches = tqdm(
                total=steps, desc=f"epoch {epoch}/{total_epochs}", unit="step", position=1, leave=False,
                dynamic_ncols=True,
            )  # fmt: skip

    def step(self, **postfix: Any) -> None:
        if self._batches is not None:
            self._batches.update(1)
            if postfix:
                self._batches.set_postfix(postfix, refresh=False)

    def end_batches(self) -> None:
        if self._batches is not None:
            self._batches.close()
            self._batches = None

    def end_epoch(self, line: str) -> None:
        self.line(line)
        self.tick_epoch()

    def tick_epoch(self) -> None:
        """An epoch ended without a line of its own (runs that evaluate every N epochs)."""
        if self._epochs is not None:
            self._epochs.update(1)

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        if self.interactive:
            tqdm.write(text, file=sys.stderr)
        else:
            print(text, flush=True)

    def close(self) -> None:
        self.end_batches()
        if self._epochs is not None:
            self._epochs.close()
            self._epochs = None
