"""Atomic file writes: a reader sees the old file or the new one, never half of one (temp file + fsync + rename).

A write that fails because the disk is full becomes one `DiskFullError` naming the file and the space left, after the
partial temporary is removed; the previous file is never touched.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from speedlab.errors import SpeedlabError

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# torch.save's C++ writer reports a full disk as a bare RuntimeError ("unexpected pos ..."); a write that fails while
# less than this is left on the device is taken to have failed for lack of space.
NEARLY_FULL_BYTES = 1 << 20


class DiskFullError(SpeedlabError):
    """A write failed because the device holding the file is full."""


def free_bytes(path: str | os.PathLike) -> int:
    """Bytes left on the device holding `path` (or its nearest existing parent), as a process of ours can use them."""
    where = Path(path)
    while not where.exists() and where != where.parent:
        where = where.parent
    stat = os.statvfs(where)
    blocks = stat.f_bfree if os.geteuid() == 0 else stat.f_bavail  # root may use the blocks reserved for it
    return blocks * stat.f_frsize


def umask() -> int:
    """The process's umask, read without changing it (Linux's /proc; elsewhere set and restored at once)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


def human_bytes(size: float) -> str:
    if abs(size) < 1024:
        return f"{size:.0f} B"
    for unit in ("KiB", "MiB"):
        size /= 1024
        if abs(size) < 1024:
            return f"{size:.1f} {unit}"
    return f"{size / 1024:.1f} GiB"


def is_disk_full(err: BaseException, path: str | os.PathLike) -> bool:
    """Whether writing `path` failed with `err` because its device is full."""
    if isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS:
        return True
    return isinstance(err, OSError | RuntimeError) and free_bytes(path) < NEARLY_FULL_BYTES


def disk_full_error(path: str | os.PathLike, needed: int | None = None) -> DiskFullError:
    """The one error for a write to `path` that ran out of space (call it once the partial file is gone)."""
    target = Path(path)
    kept = f"; the previous {target.name} is untouched" if target.exists() else ""
    need = f", {human_bytes(needed)} needed" if needed else ""
    return DiskFullError(
        f"no space left on the device writing {target}: {human_bytes(free_bytes(target))} free there{need}{kept}. "
        "Free some space (or write elsewhere: hydra.run.dir=..., data.cache_dir=...) and run again"
    )


def reserve(path: str | os.PathLike, size: int) -> None:
    """Allocate `size` bytes for the file at `path` now, so that a full disk fails here with ENOSPC instead of
    killing the process with SIGBUS when a memory-mapped write later finds no block to land in."""
    try:
        fd = os.open(path, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, size)
        finally:
            os.close(fd)
    except OSError as err:
        if err.errno in DISK_FULL_ERRNOS:
            Path(path).unlink(missing_ok=True)
            raise disk_full_error(path, size) from None
        raise


def _release(err: BaseException) -> None:
    """Drop the locals of the frames `err` passed through: a writer that failed mid-file (torch.save's) still holds
    the file open there, so the space of a removed partial file would not come back until the error is gone."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:  # torch's RuntimeError comes with the stream error as context
        seen.add(id(err))
        traceback.clear_frames(err.__traceback__)
        err = err.__context__ or err.__cause__


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block finishes. A full disk, in the
    block or in the final sync, raises `DiskFullError` with the temporary already removed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
    except OSError as err:
        if err.errno in DISK_FULL_ERRNOS:
            raise disk_full_error(target) from None
        raise
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp makes the file 0600; the finished file gets the mode a plain open() would give it (0666 less the
    # umask), so a teammate on a shared server reads result.json and the cache's labels like the rest of the run.
    os.chmod(tmp, 0o666 & ~umask())
    disk_full = False
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except (OSError, RuntimeError) as err:
        if not is_disk_full(err, target.parent):
            raise
        _release(err)
        disk_full = True
    finally:
        tmp.unlink(missing_ok=True)
    if disk_full:  # reported once the partial file is gone, so the space it names is what is really left
        raise disk_full_error(target)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: str | os.PathLike, data: Any, lines: dict[str, RecordLines] | None = None) -> None:
    atomic_write_text(path, dumps(data, lines) + "\n")


class RecordLines:
    """The JSON lines of a growing list of records (a run's epochs), encoded once each: a record is final once
    written, so each write encodes only the records added since. Re-encoding 10,000 epochs at every write cost
    ~50 ms a time, 2 % of a 10,000-epoch run."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._encode = json.JSONEncoder(default=str).encode

    def of(self, records: list[Any]) -> list[str]:
        if len(records) < len(self.lines):  # a different (shorter) list: start again
            self.lines = []
        self.lines += [self._encode(r) for r in records[len(self.lines) :]]
        return self.lines

    def array(self, records: list[Any]) -> str:
        """The records as one compact JSON array."""
        return "[" + ",".join(self.of(records)) + "]"


def dumps(data: Any, lines: dict[str, RecordLines] | None = None) -> str:
    """JSON indented for reading, except that a top-level list of records (a run's epochs) is written one record
    per line, through `lines[key]` when given (which encodes each record once)."""
    records = (
        [k for k, v in data.items() if isinstance(v, list) and v and isinstance(v[0], dict)]
        if isinstance(data, dict)
        else []
    )
    if not records:
        return json.dumps(data, indent=2, default=str)
    parts, lines = [], lines if lines is not None else {}
    for key, value in data.items():
        if key in records:
            encoded = lines.setdefault(key, RecordLines()).of(value)
            parts.append(f"  {json.dumps(key)}: [\n" + ",\n".join(f"    {line}" for line in encoded) + "\n  ]")
        else:
            body = json.dumps(value, indent=2, default=str).replace("\n", "\n  ")
            parts.append(f"  {json.dumps(key)}: {body}")
    return "{\n" + ",\n".join(parts) + "\n}"


@contextmanager
def staged_files(path: str | os.PathLike) -> Iterator[Path]:
    """Yield `path`'s name inside a fresh temporary directory beside it. When the block finishes, every file written
    there moves beside `path`, companions first (ONNX external data) and `path` itself last, so a reader never finds
    the main file without its companions; on an error nothing moves and the directory is removed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    disk_full = False
    try:
        yield staging / target.name
        written = sorted(staging.iterdir(), key=lambda p: p.name == target.name)
        for file in written:
            with open(file, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(file, target.parent / file.name)
    except (OSError, RuntimeError) as err:
        if not is_disk_full(err, target.parent):
            raise
        _release(err)
        disk_full = True
    finally:
        for leftover in staging.iterdir():
            leftover.unlink()
        staging.rmdir()
    if disk_full:
        raise disk_full_error(target)
