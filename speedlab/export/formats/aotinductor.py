"""AOTInductor packages (`.pt2`): PyTorch's own deployment format. `torch.export` captures the model as a graph,
`torch._inductor.aoti_compile_and_package` compiles it ahead of time (C++ kernels and a C++ wrapper in one shared
library, the weights folded in as constants with `freezing`) and `torch._inductor.aoti_load_package` runs it with no
Python model behind it.

Two registrations of one class: `aotinductor` compiles for the CPU (it needs a C++ compiler), `aotinductor_cuda`
for a CUDA device (it needs one). A package covers the request's batch range: one batch size is a static package
(every kernel specialised to that shape), a range is a dynamic batch axis (`torch.export.Dim`). The package records
the torch and speedlab versions that built it (`aot_inductor.metadata`), read back before loading: a package is
compiled against one torch's C++ ABI, and one built by another torch is refused with what to do, not loaded.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import torch

from speedlab.config import ExportCfg
from speedlab.errors import SpeedlabError
from speedlab.export.formats import BuildRequest, Runner, register
from speedlab.fsutil import atomic_path

SUFFIX = ".pt2"
COMPILERS = ("c++", "g++", "clang++")
# Inductor options of every package: the weights become constants (folded, prepacked once), as in `bench.inductor`'s
# freezing; the shapes are all known, so no autotuning is needed to be fair (`max-autotune` is inductor's lever).
INDUCTOR_CONFIGS = {"freezing": True}


def package_path(directory: Path, precision: str, device: str) -> Path:
    suffix = "" if device == "cpu" else f"-{device}"
    return Path(directory) / f"model-{precision}{suffix}{SUFFIX}"


def metadata(path: Path) -> dict[str, str]:
    """What the package says of itself (the compiled wrapper's metadata: device, CPU ISA, and the versions speedlab
    recorded), read from the archive without loading any code. A file that is no AOTInductor package raises."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith(".wrapper_metadata.json")]
            if not names:
                raise SpeedlabError(f"{path}: a zip archive without an AOTInductor model (no *.wrapper_metadata.json)")
            return json.loads(archive.read(names[0]))
    except (OSError, zipfile.BadZipFile, ValueError) as err:
        raise SpeedlabError(f"{path}: not an AOTInductor package ({type(err).__name__}: {err})") from None


def check_loadable(path: Path) -> dict[str, str]:
    """The package's metadata, once it is known to fit this torch; a package another torch built raises."""
    meta = metadata(path)
    built_by = meta.get("speedlab_torch")
    if built_by is not None and built_by != torch.__version__:
        raise SpeedlabError(
            f"{path} was compiled by torch {built_by}; this is torch {torch.__version__}, whose C++ "
            "runtime may not load it: export it again with this torch (export.formats=[aotinductor])"
        )
    return meta


def load(path: Path, device: str = "cpu") -> Any:
    """The compiled model in the package (callable on a batch on `device`), after the version check."""
    check_loadable(path)
    index = torch.device(device).index or 0 if device != "cpu" else -1
    return torch._inductor.aoti_load_package(str(path), device_index=index)


class AotInductorFormat:
    """An AOTInductor package of the fp32 model for one device kind."""

    batch_range_matters = True  # the package's batch axis is the request's range (or one static size)

    def __init__(self, device: str) -> None:
        self.device = device
        self.file_format = "pt2" if device == "cpu" else f"pt2_{device}"  # result.json's name of the artifact

    def precisions(self, cfg: ExportCfg) -> list[str]:
        return ["fp32"]

    def source(self, precision: str) -> tuple[str, str] | None:
        return None

    def unavailable(self) -> str | None:
        if self.device == "cuda":
            return None if torch.cuda.is_available() else "no CUDA device (aotinductor_cuda compiles for one)"
        if not any(shutil.which(c) for c in COMPILERS):
            return f"no C++ compiler ({', '.join(COMPILERS)}) on PATH: AOTInductor compiles the package with one"
        return None

    def build(self, request: BuildRequest) -> Path:
        low, high = request.batch_range
        example = _example_of(request.example, max(low, min(2, high))).to(self.device)
        model = request.model.to(self.device)
        dynamic = ({0: torch.export.Dim("batch", min=low, max=high)},) if high > low else None
        try:
            with torch.no_grad():
                program = torch.export.export(model, (example,), dynamic_shapes=dynamic)
        finally:
            request.model.to("cpu")  # the request's model stays where it was given
        path = package_path(request.directory, request.precision, self.device)
        versions = {"speedlab_torch": torch.__version__, "speedlab_version": _speedlab_version(),
                    "speedlab_batch_range": f"{low}-{high}"}  # fmt: skip
        configs = {**INDUCTOR_CONFIGS, "aot_inductor.metadata": versions}
        with atomic_path(path, suffix=SUFFIX) as tmp:
            torch._inductor.aoti_compile_and_package(program, package_path=str(tmp), inductor_configs=configs)
        request.extra.update(batch_range=[low, high], dynamic_batch=dynamic is not None, device=self.device,
                             inductor_configs=dict(INDUCTOR_CONFIGS))  # fmt: skip
        return path

    def verify(self, path: Path) -> str | None:
        meta = metadata(path)
        return None if meta.get("AOTI_DEVICE_KEY", self.device) == self.device else f"compiled for {meta}"

    def runners(self, path: Path) -> dict[str, Runner]:
        from speedlab.export import parity

        compiled = load(path, self.device)

        def run(inputs):
            with torch.no_grad():
                return parity.host(compiled(torch.from_numpy(inputs).to(self.device)))

        return {f"aotinductor/{self.device}": run}


def _example_of(example: torch.Tensor, size: int) -> torch.Tensor:
    """`example` repeated or cut to `size` samples: export traces with it, so only its shape and dtype matter."""
    repeats = -(-size // len(example))
    return torch.cat([example] * repeats)[:size]


def _speedlab_version() -> str:
    try:
        return importlib.metadata.version("speedlab")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


register("aotinductor")(lambda: AotInductorFormat("cpu"))
register("aotinductor_cuda")(lambda: AotInductorFormat("cuda"))
