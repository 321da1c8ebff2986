"""Native kernels speedlab compiles for one exact shape at first use, and caches: C++ with OpenMP, loaded by ctypes.

`library(source, defines, fallback)` compiles `speedlab/native/<source>` with the shape baked in as -D macros
(every loop's trip count known to the compiler), for this CPU (`-march=native`), into
`artifacts/cache/native/<stem>-<key>.so`. The key hashes the source, the macros, the flags, the compiler's version
and the CPU's instruction-set flags, so a changed kernel, compiler or CPU builds afresh, and a second run of the
same shape loads the cached library in milliseconds. The build writes beside the target and renames it into place
(an interrupted build leaves nothing half-written; two racing builds agree).

No torch headers and no pybind: a kernel is an `extern "C"` function of raw pointers, so a build takes about a
second, not the minute a torch C++ extension takes, and needs no ninja. Where no C++ compiler is found,
`CompilerMissing` says so and names the fallback the caller gives.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
from functools import cache
from pathlib import Path

from speedlab import record
from speedlab.errors import SpeedlabError
from speedlab.fsutil import atomic_path

SOURCES = Path(__file__).parent
# -ffast-math lets the compiler reorder the sums across SIMD lanes (the kernels' results differ from torch's in the
# last bits, within the parity tests' tolerances) and vectorise exp/erf through glibc's vector maths.
FLAGS = ("-O3", "-march=native", "-fopenmp", "-ffast-math", "-std=c++17", "-shared", "-fPIC")


class CompilerMissing(SpeedlabError):
    """No C++ compiler to build a native kernel with."""


def compiler() -> str | None:
    """The C++ compiler: $CXX, else g++ or c++ on the PATH; None when there is none."""
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and (found := shutil.which(name)):
            return found
    return None


def cache_dir() -> Path:
    """$SPEEDLAB_NATIVE_CACHE, else artifacts/cache/native (the tests share one, as they share Inductor's)."""
    shared = os.environ.get("SPEEDLAB_NATIVE_CACHE")
    return Path(shared) if shared else record.artifacts_root() / "cache" / "native"


@cache
def _cpu_flags() -> str:
    """This CPU's instruction-set flags (what -march=native compiles for), so a cache shared by another CPU's
    machine never hands over a library this one cannot run."""
    try:
        return next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        return ""


@cache
def _compiler_version(cxx: str) -> str:
    return subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout.splitlines()[0]


def library_path(source: str, defines: dict[str, str | int]) -> Path:
    """Where the build of `source` for these macros is cached (it may not exist yet)."""
    cxx = compiler() or "none"
    # The source and every header beside it (the kernels include them).
    text = "\0".join(f.read_text() for f in [SOURCES / source, *sorted(SOURCES.glob("*.h"))])
    macros = sorted(f"-D{k}={v}" for k, v in defines.items())
    version = _compiler_version(cxx) if cxx != "none" else ""
    key = hashlib.sha256("\0".join([text, *macros, *FLAGS, version, _cpu_flags()]).encode())
    return cache_dir() / f"{Path(source).stem}-{key.hexdigest()[:16]}.so"


def library(source: str, defines: dict[str, str | int], fallback: str) -> tuple[ctypes.CDLL, Path, bool]:
    """(the loaded library, its path, whether it came from the cache): `source` compiled for `defines`, now or
    earlier. `fallback` is what the CompilerMissing error tells the user to use instead."""
    cxx = compiler()
    if cxx is None:
        raise CompilerMissing(f"no C++ compiler (set $CXX, or install g++) to build speedlab/native/{source}; "
                              f"{fallback}")  # fmt: skip
    target = library_path(source, defines)
    cached = target.exists()
    if not cached:
        macros = [f"-D{k}={v}" for k, v in defines.items()]
        with atomic_path(target, suffix=".so") as tmp:
            done = subprocess.run([cxx, *FLAGS, *macros, str(SOURCES / source), "-o", str(tmp)], capture_output=True,
                                  text=True)  # fmt: skip
            if done.returncode != 0:
                raise SpeedlabError(f"building speedlab/native/{source} failed ({cxx}):\n{done.stderr[-2000:]}")
    return ctypes.CDLL(str(target)), target, cached
