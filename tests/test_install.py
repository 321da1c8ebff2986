"""speedlab as a library: `pip install` (not editable) gives a package that composes its configs from any directory
(they ship inside it), a console script with `--version`, and requirements.txt lists exactly pyproject's runtime
dependencies."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import tomllib

import speedlab

REPO = Path(__file__).resolve().parent.parent


def _source_copy(to: Path) -> Path:
    """What a source distribution holds, copied (pip builds in the source tree: the checkout stays untouched)."""
    for name in ("speedlab", "activations", "conf"):
        shutil.copytree(REPO / name, to / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, to / name)
    return to


def test_a_plain_install_composes_from_another_directory(tmp_path):
    target = tmp_path / "site"
    source = _source_copy(tmp_path / "source")
    # --no-deps: the dependencies are this environment's; the point is the package itself, configs included.
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(target), str(source)], check=True, capture_output=True, cwd=tmp_path)  # fmt: skip
    assert not (target / "speedlab" / "conf").is_symlink() and (target / "speedlab" / "conf" / "train.yaml").is_file()
    env = {**os.environ, "PYTHONPATH": str(target)}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run([sys.executable, "-m", "speedlab", "train", "+exp=tc_amp", "--cfg", "job"], env=env,
                         cwd=elsewhere, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "name: tc_amp" in out.stdout and re.search(r"compile:\n\s+enabled: true", out.stdout)
    where = subprocess.run([sys.executable, "-c", "import speedlab; print(speedlab.__file__)"], env=env,
                           cwd=elsewhere, capture_output=True, text=True)  # fmt: skip
    assert where.stdout.strip().startswith(str(target))  # the installed copy, not this checkout
    version = subprocess.run([str(target / "bin" / "speedlab"), "--version"], env=env, cwd=elsewhere,
                             capture_output=True, text=True)  # fmt: skip
    assert version.returncode == 0 and version.stdout.strip().startswith(f"speedlab {speedlab.__version__}")


def _names(lines: list[str]) -> dict[str, str]:
    reqs = [line.split("#")[0].strip() for line in lines]
    return {re.split(r"[<>=!~]", r)[0].lower(): r for r in reqs if r and not r.startswith("-r")}


def test_requirements_txt_is_the_runtime_dependencies():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pinned = _names((REPO / "requirements.txt").read_text().splitlines())
    assert pinned == _names(declared["dependencies"])
    dev = _names((REPO / "requirements-dev.txt").read_text().splitlines())
    assert set(_names(declared["optional-dependencies"]["dev"])) <= set(dev)
    assert not {"pytest", "ruff", "selenium"} & set(pinned)  # dev tools stay out of the runtime list
