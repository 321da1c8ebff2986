"""The decoded cache: every image of a split decoded once into an N x C x S x S uint8 array (plus labels), stored
beside the data and memory-mapped on load.

A cache records a fingerprint of what it was built from (file names, sizes and mtimes, labels, image size and
channels, cache format, decoder version). A cache whose fingerprint does not match is rebuilt, and the reason is
printed; it is never silently reused. Files are written to temporaries and renamed, with the metadata last, so an
interrupted build leaves no cache that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import PIL
from tqdm import tqdm

from speedlab.data.decode import decode_many
from speedlab.data.files import FileSplit
from speedlab.errors import DataError
from speedlab.fsutil import atomic_path, atomic_write_json, disk_full_error, is_disk_full, reserve

# Bump when the decoding or the layout changes: older caches are then rebuilt (2: channels in the fingerprint).
CACHE_FORMAT = 2
CHUNK = 256  # images per decode task
PARALLEL_MIN = 2048  # below this, worker start-up costs more than it saves


@dataclass
class DecodedSplit:
    images: np.ndarray  # uint8, N x C x S x S, memory-mapped from disk
    labels: np.ndarray  # int64, N
    skipped: list[str] = field(default_factory=list)  # corrupt files left out (data.skip_corrupt=true)
    path: Path | None = None
    built: bool = False  # built in this call (False: reused)
    build_time_s: float = 0.0
    rebuild_reason: str | None = None


def fingerprint(split: FileSplit, image_size: int, channels: int) -> dict:
    digest = hashlib.sha256()
    for rel in split.files:
        st = os.stat(split.base / rel)
        digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return {
        "format": CACHE_FORMAT,
        "decoder": f"Pillow {PIL.__version__}",
        "image_size": image_size,
        "channels": channels,
        "count": len(split.files),
        "files_sha256": digest.hexdigest(),
        "labels_sha256": hashlib.sha256(np.ascontiguousarray(split.labels).tobytes()).hexdigest(),
    }


def _paths(cache_dir: Path, stem: str) -> tuple[Path, Path, Path]:
    return cache_dir / f"{stem}.images.npy", cache_dir / f"{stem}.labels.npy", cache_dir / f"{stem}.meta.json"


def _stale_reason(meta_path: Path, images_path: Path, labels_path: Path, expected: dict) -> str | None:
    """Why the cache on disk cannot be used (None: it can)."""
    if not meta_path.is_file():
        return "no cache yet"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as err:
        return f"unreadable metadata ({err})"
    found = meta.get("fingerprint", {})
    for key, want in expected.items():
        if found.get(key) != want:
            what = {"files_sha256": "the image files changed", "labels_sha256": "the labels changed"}.get(
                key, f"{key} was {found.get(key)!r}, now {want!r}"
            )
            return f"built from other data or another version: {what}"
    if not images_path.is_file() or not labels_path.is_file():
        return "cache files are missing"
    try:  # a truncated or overwritten array file (a full disk, a copy cut short) is rebuilt, not read
        count = len(np.load(images_path, mmap_mode="r"))
        if count != len(np.load(labels_path)):
            return "damaged cache files: images and labels differ in count"
    except (OSError, ValueError) as err:
        return f"damaged cache files ({err})"
    return None


def _decode_all(split: FileSplit, image_size: int, out: np.ndarray, workers: int, desc: str) -> list[tuple[int, str]]:
    """Decode every image of `split` into `out` (whose shape gives the channels); returns (index, reason) for the
    corrupt ones."""
    channels = out.shape[1]
    paths = [str(split.base / f) for f in split.files]
    chunks = [(start, paths[start : start + CHUNK]) for start in range(0, len(paths), CHUNK)]
    bad: list[tuple[int, str]] = []
    bar = tqdm(total=len(paths), desc=desc, unit="img", dynamic_ncols=True, mininterval=0.5)

    def take(start: int, result: tuple[np.ndarray, list[tuple[int, str]]]) -> None:
        images, chunk_bad = result
        out[start : start + len(images)] = images
        bad.extend((start + i, reason) for i, reason in chunk_bad)
        bar.update(len(images))

    try:
        if workers <= 1 or len(paths) < PARALLEL_MIN:
            for start, chunk in chunks:
                take(start, decode_many(chunk, image_size, channels))
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = [(start, pool.submit(decode_many, chunk, image_size, channels)) for start, chunk in chunks]
                for start, future in futures:
                    take(start, future.result())
    finally:
        bar.close()
    return bad


def _build(
    split: FileSplit,
    image_size: int,
    channels: int,
    paths: tuple[Path, Path, Path],
    expected: dict,
    skip_corrupt: bool,
    workers: int,
    desc: str,
) -> list[str]:
    images_path, labels_path, meta_path = paths
    images_path.parent.mkdir(parents=True, exist_ok=True)
    meta_path.unlink(missing_ok=True)  # the old cache stops counting as valid before anything is replaced
    shape = (len(split), channels, image_size, image_size)
    scratch = images_path.with_name(f".{images_path.name}.decoding.tmp")
    try:
        decoded = np.lib.format.open_memmap(scratch, mode="w+", dtype=np.uint8, shape=shape)
        reserve(scratch, scratch.stat().st_size)  # a full disk fails here, not as SIGBUS mid-decode
    except OSError as err:
        scratch.unlink(missing_ok=True)
        if is_disk_full(err, scratch.parent):
            raise disk_full_error(images_path, needed=int(np.prod(shape))) from None
        raise
    try:
        bad = _decode_all(split, image_size, decoded, workers, desc)
        if bad and not skip_corrupt:
            index, reason = bad[0]
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise DataError(
                f"corrupt image {split.path(index)}: {reason}{more}. Replace or delete it, or set "
                "data.skip_corrupt=true to skip corrupt images (they are counted in result.json)."
            )
        keep = np.ones(len(split), dtype=bool)
        keep[[i for i, _ in bad]] = False
        with atomic_path(images_path, suffix=".npy") as tmp_images:
            if bad:  # drop the corrupt rows; rare, so the extra copy is fine
                compact = np.lib.format.open_memmap(
                    tmp_images, mode="w+", dtype=np.uint8, shape=(int(keep.sum()), *shape[1:])
                )
                reserve(tmp_images, tmp_images.stat().st_size)
                compact[:] = decoded[keep]
                compact.flush()
                del compact
            else:
                decoded.flush()
                os.replace(scratch, tmp_images)
    finally:
        del decoded
        scratch.unlink(missing_ok=True)
    with atomic_path(labels_path, suffix=".npy") as tmp_labels:
        np.save(tmp_labels, split.labels[keep])
    skipped = [split.files[i] for i, _ in bad]
    atomic_write_json(meta_path, {"fingerprint": expected, "skipped": skipped, "created": time.time()})
    return skipped


def load_or_build(
    split: FileSplit,
    *,
    stem: str,
    cache_dir: Path,
    image_size: int,
    skip_corrupt: bool,
    channels: int = 3,
    workers: int = 2,
) -> DecodedSplit:
    """The decoded cache of `split`, built first if missing or stale."""
    paths = _paths(Path(cache_dir), stem)
    images_path, labels_path, meta_path = paths
    expected = fingerprint(split, image_size, channels)
    reason = _stale_reason(meta_path, images_path, labels_path, expected)
    built, build_time = False, 0.0
    if reason is not None:
        print(f"decoded cache {images_path}: building ({reason})", flush=True)
        t0 = time.perf_counter()
        _build(split, image_size, channels, paths, expected, skip_corrupt, workers, desc=f"decode {stem}")
        built, build_time = True, time.perf_counter() - t0
    meta = json.loads(meta_path.read_text())
    skipped = meta.get("skipped", [])
    if skipped and not skip_corrupt:
        raise DataError(
            f"{len(skipped)} corrupt image(s) were skipped when this cache was built, e.g. "
            f"{split.base / skipped[0]}; set data.skip_corrupt=true to train without them, or fix them."
        )
    return DecodedSplit(
        images=np.load(images_path, mmap_mode="r"),
        labels=np.load(labels_path),
        skipped=skipped,
        path=images_path,
        built=built,
        build_time_s=build_time,
        rebuild_reason=reason if built else None,
    )
