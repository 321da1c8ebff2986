"""Fetch TinyImageNet's zip (or take a local zip / any URL), check it, and unpack it atomically under the root."""

from __future__ import annotations

import hashlib
import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from urllib.parse import urlparse

from tqdm import tqdm

from speedlab.data.sources.tinyimagenet import DATASET_DIR as TINYIMAGENET_DIR
from speedlab.errors import DataError
from speedlab.fsutil import atomic_path

OFFICIAL_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
OFFICIAL_SIZE = 248_100_043
OFFICIAL_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
ZIP_NAME = f"{TINYIMAGENET_DIR}.zip"


def _is_url(source: str) -> bool:
    return urlparse(source).scheme in ("http", "https", "ftp", "file")


def _fetch(url: str, dest: Path, timeout: float) -> None:
    """Stream `url` to `dest` (atomically) with a progress bar."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - the user chose the URL
            total = int(response.headers.get("Content-Length") or 0) or None
            with (
                atomic_path(dest, suffix=".zip") as tmp,
                open(tmp, "wb") as out,
                tqdm(total=total, unit="B", unit_scale=True, desc=f"download {dest.name}") as bar,
            ):
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        reason = getattr(err, "reason", err)
        raise DataError(
            f"could not download {url} ({reason}). Without network, fetch {ZIP_NAME} elsewhere "
            f"({OFFICIAL_URL}), copy it to {dest}, and run `python -m speedlab data download {dest}`."
        ) from None


def md5sum(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, *, size: int | None, md5: str | None) -> str:
    """Check the zip's size and MD5 where they are known; returns the MD5."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise DataError(f"{path} has {actual_size} bytes, expected {size}: a partial or different download")
    digest = md5sum(path)
    if md5 is not None and digest != md5.lower():
        raise DataError(f"{path} has MD5 {digest}, expected {md5}: a corrupt or different file")
    return digest


def unpack(archive: Path, root: Path) -> Path:
    """Unpack into a temporary folder under `root`, then rename it into place: never a half-unpacked dataset."""
    target = root / TINYIMAGENET_DIR
    staging = root / f".{TINYIMAGENET_DIR}.unpacking"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            if not any(n.startswith(f"{TINYIMAGENET_DIR}/") and n.endswith("wnids.txt") for n in names):
                raise DataError(f"{archive} does not hold {TINYIMAGENET_DIR}/wnids.txt: not a TinyImageNet zip")
            for member in tqdm(names, desc="unpack", unit="file", mininterval=0.5):
                zf.extract(member, staging)
    except zipfile.BadZipFile as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise DataError(f"{archive} is not a valid zip file ({err})") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    (staging / TINYIMAGENET_DIR).rename(target)
    shutil.rmtree(staging, ignore_errors=True)
    return target


def download(source: str | None, root: str | Path, *, md5: str | None = None, timeout: float = 60.0) -> Path:
    """Make `<root>/tiny-imagenet-200` from `source` (default: the official URL), a URL or a local zip path."""
    root = Path(root).expanduser().resolve()
    target = root / TINYIMAGENET_DIR
    if (target / "wnids.txt").is_file():
        print(f"{target} already exists; nothing to do (delete it to download again)")
        return target
    root.mkdir(parents=True, exist_ok=True)
    source = source or OFFICIAL_URL
    official = source == OFFICIAL_URL
    if _is_url(source):
        archive = root / ZIP_NAME
        _fetch(source, archive, timeout)
    else:
        archive = Path(source).expanduser()
        if not archive.is_file():
            raise DataError(f"no such zip file: {archive}")
    # The official zip has a known size and hash; another source is checked against --md5 when one is given.
    known_official = official or archive.stat().st_size == OFFICIAL_SIZE
    digest = verify(
        archive, size=OFFICIAL_SIZE if official else None, md5=md5 or (OFFICIAL_MD5 if known_official else None)
    )
    print(f"{archive}: {archive.stat().st_size} bytes, MD5 {digest}")
    return unpack(archive, root)
