"""Reading results back: result.json files found under run directories, brought up to the current schema.

The one reader under `report` and `compare` (and the schema's check): a file from an older speedlab is upgraded on
read (schema 1 called a cell that cannot run here `unsupported`, now `skipped`; its version key was `speedlab`),
a file from a newer one is refused with what to do, and a file that is not a run is one clear error.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import speedlab
from speedlab import record, status
from speedlab.errors import SpeedlabError

SCHEMA_FILE = Path(__file__).resolve().parent / "schema" / "result.schema.json"


def schema() -> dict[str, Any]:
    """The JSON Schema every result.json of this version satisfies (docs/comparing.md explains its fields)."""
    return json.loads(SCHEMA_FILE.read_text())


def upgrade(result: dict[str, Any]) -> dict[str, Any]:
    """`result` in the current schema's terms (in place): older files are read as the current version says."""
    version = result.get("schema_version", 1)
    if not isinstance(version, int) or version > speedlab.SCHEMA_VERSION:
        raise SpeedlabError(
            f"result.json schema {version!r} is newer than this speedlab reads ({speedlab.SCHEMA_VERSION}): "
            "upgrade speedlab to read it"
        )
    if version < 2:
        result.setdefault("speedlab_version", result.pop("speedlab", None))
        for row in result.get("rows") or []:
            if row.get("status") == "unsupported":
                row["status"] = status.SKIPPED
    return result


def load(run_dir: Path) -> dict[str, Any]:
    """One run's result.json (a run directory or the file itself), upgraded, with `_dir`: where it lies."""
    path = record.result_path(run_dir) if Path(run_dir).is_dir() else Path(run_dir)
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SpeedlabError(f"{run_dir}: no readable result.json ({err})") from None
    if not isinstance(result, dict):
        raise SpeedlabError(f"{path}: not a speedlab result (a JSON object with kind and status)")
    result = upgrade(result)
    result["_dir"] = str(path.parent)
    return result


def collect(roots: Sequence[Path], finished_only: bool = True) -> list[dict[str, Any]]:
    """Every result.json under `roots` whose run finished (`ok`), oldest first; with `finished_only=False` every
    run, its `status` read as it stands now (a killed run's "running" becomes "crashed"). A damaged file is named
    on stderr and left out."""
    missing = [str(r) for r in roots if not Path(r).exists()]
    if missing:
        raise SpeedlabError(f"no such run directory: {', '.join(missing)}")
    paths = sorted({p for root in map(Path, roots)
                    for p in ([root] if root.is_file() else root.rglob(record.RESULT_FILE))})  # fmt: skip
    found = []
    for path in paths:
        try:
            result = load(path)
        except SpeedlabError as err:
            print(f"speedlab: skipped {err}", file=sys.stderr)
            continue
        if "kind" not in result:
            continue
        result["status"] = record.status_of(result)
        if result["status"] == status.OK or not finished_only:
            found.append(result)
    return sorted(found, key=lambda r: r.get("started_at", ""))


def machine_name(result: dict[str, Any]) -> str:
    """The device a run measured on: the GPU's name, or the CPU model with the cores the process could use."""
    env = result.get("env", {})
    gpu = env.get("gpu")
    cpu = env.get("cpu") or {}
    cores = cpu.get("affinity")
    return gpu["name"] if gpu else f"{cpu.get('model')} ({cores} core{'' if cores == 1 else 's'})"


def commit(result: dict[str, Any]) -> str:
    git = result.get("env", {}).get("git") or {}
    return (git.get("commit") or "unknown")[:8] + ("+dirty" if git.get("dirty") else "")


def machine(result: dict[str, Any]) -> str:
    """The device and software a run measured with, in one line for a table's caption."""
    env = result.get("env", {})
    return (f"{machine_name(result)}; torch {env.get('torch')}, onnxruntime {env.get('onnxruntime')}, "
            f"speedlab {result.get('speedlab_version')}, commit {commit(result)}")  # fmt: skip
