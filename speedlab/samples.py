"""Raw samples beside a run's result.json: every timed call of a bench cell, every training step's time, kept so a
result can be analysed again (`speedlab compare`, `report`) instead of trusting the summary it was reduced to.

One compressed NumPy archive per run (`samples.npz`, written atomically), one float64 array per series. result.json
names the file (`samples.file`) and each series where it belongs (a bench row's `samples`: one key per repeat; a train
run's `samples.step_s` and `samples.step_epoch`: the time of every step after the warm-up, and its epoch).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from speedlab import record
from speedlab.errors import SpeedlabError
from speedlab.fsutil import atomic_path


def write(run_dir: Path, series: dict[str, np.ndarray | list[float]]) -> str:
    """Write every series to the run's samples file (replacing it); returns the file's name for result.json."""
    path = record.samples_path(run_dir)
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **{k: np.asarray(v, dtype=np.float64) for k, v in series.items()})
    return path.name


def read(run_dir: Path, keys: list[str] | None = None) -> dict[str, np.ndarray]:
    """The run's series (those named in `keys`, or all). A missing, truncated or corrupt file, or a missing series,
    is one SpeedlabError naming the file."""
    path = record.samples_path(run_dir)
    if not path.is_file():
        raise SpeedlabError(f"{path}: no raw-samples file (result.json names one; was it deleted?)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            wanted = keys if keys is not None else list(archive.files)
            missing = [k for k in wanted if k not in archive.files]
            if missing:
                raise SpeedlabError(f"{path}: no series {', '.join(missing)} (it holds {len(archive.files)})")
            return {k: archive[k] for k in wanted}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise SpeedlabError(f"{path}: corrupt raw-samples file ({type(err).__name__}: {err}); run the bench or "
                            "training again to measure afresh") from None  # fmt: skip
