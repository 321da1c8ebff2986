"""Atomic file writes: a reader sees the old file or the new one, never half of one (temp file + fsync + rename)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block finishes."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


@contextmanager
def staged_files(path: str | os.PathLike) -> Iterator[Path]:
    """Yield `path`'s name inside a fresh temporary directory beside it. When the block finishes, every file written
    there moves beside `path`, companions first (ONNX external data) and `path` itself last, so a reader never finds
    the main file without its companions; on an error nothing moves and the directory is removed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield staging / target.name
        written = sorted(staging.iterdir(), key=lambda p: p.name == target.name)
        for file in written:
            with open(file, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(file, target.parent / file.name)
    finally:
        for leftover in staging.iterdir():
            leftover.unlink()
        staging.rmdir()
