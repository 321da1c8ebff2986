"""The IDX format of MNIST and its kin (Fashion-MNIST, KMNIST): a big-endian header (two zero bytes, a type code,
the number of dimensions, then each dimension as a 4-byte integer) followed by the raw array. Plain or gzipped.

`read` checks everything a broken download can get wrong and names the file and the fault; `write` makes files of
the same format (for `data synth --kind mnist`), atomically.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from speedlab.errors import DataError
from speedlab.fsutil import atomic_path

UBYTE = 0x08  # the type code of unsigned bytes, the only type MNIST uses


def _raw(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: cannot read it ({type(err).__name__}: {err}); download it again") from None


def read(path: Path, ndim: int) -> np.ndarray:
    """The uint8 array of an IDX file with `ndim` dimensions (3: images count x rows x cols; 1: labels)."""
    data = _raw(path)
    if len(data) < 4:
        raise DataError(f"{path}: {len(data)} bytes, too short for an IDX header; download it again")
    zero, type_code, dims = struct.unpack(">HBB", data[:4])
    if zero != 0 or type_code != UBYTE:
        raise DataError(
            f"{path}: not an IDX file of unsigned bytes (magic number 0x{data[:4].hex()}, expected 0x0000080{ndim})"
        )
    if dims != ndim:
        what = "images (count x rows x cols)" if ndim == 3 else "labels (count)"
        raise DataError(f"{path}: holds a {dims}-dimensional array, expected {ndim} dimensions for {what}")
    header = 4 + 4 * dims
    if len(data) < header:
        raise DataError(f"{path}: truncated inside its header; download it again")
    shape = struct.unpack(f">{dims}I", data[4:header])
    expected = math.prod(shape)
    if len(data) - header != expected:
        raise DataError(
            f"{path}: its header says {' x '.join(map(str, shape))} ({expected:,} bytes of data) but the file holds "
            f"{len(data) - header:,}: {'truncated' if len(data) - header < expected else 'trailing bytes'}; "
            "download it again"
        )
    # A writable array (torch.from_numpy warns about read-only buffers): one copy, into a bytearray.
    return np.frombuffer(bytearray(data), dtype=np.uint8, offset=header).reshape(shape)


def write(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (gzipped when `path` ends in .gz), atomically."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    body = struct.pack(">HBB", 0, UBYTE, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    with atomic_path(path, suffix=path.suffix) as tmp:
        tmp.write_bytes(gzip.compress(body, mtime=0) if path.suffix == ".gz" else body)
