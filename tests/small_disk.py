"""Run commands against a disk that really fills up: a small tmpfs mounted in a private mount namespace.

    unshare --mount python tests/small_disk.py PLAN.json

The plan names the mount point, the tmpfs size, an output folder and a list of steps. Each step runs one command
(cwd: the repository) and may fill the disk first (`fill_first`) or as soon as a file appears (`fill_when`; with
`fill_when_text`, once it holds that text), leaving `leave` bytes free; `unfill` removes the ballast before the step.
Writes then fail with a real ENOSPC from the kernel, as on a full disk. At the end the tmpfs's contents are copied to
OUT/disk (the tmpfs vanishes with the namespace) and every step's exit code and output go to OUT/outcome.json.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _fill(mount: Path, leave: int) -> None:
    stat = os.statvfs(mount)
    free = stat.f_bfree * stat.f_frsize
    ballast = mount / "ballast"
    try:
        with open(ballast, "ab") as f:
            f.write(b"\0" * max(0, free - leave))  # real bytes: tmpfs counts the pages written
    except OSError:  # the last page did not fit: full is what we want
        pass


def _holds(path: Path, text: str) -> bool:
    try:
        return path.exists() and (not text or text in path.read_text(errors="replace"))
    except OSError:  # replaced as we read it
        return False


def _run_step(step: dict, mount: Path, env: dict) -> dict:
    if step.get("unfill"):
        (mount / "ballast").unlink(missing_ok=True)
    if step.get("fill_first"):
        _fill(mount, step.get("leave", 0))
    proc = subprocess.Popen(step["argv"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    trigger = Path(step["fill_when"]) if step.get("fill_when") else None
    deadline = time.monotonic() + step.get("timeout", 300)
    while trigger is not None and proc.poll() is None and time.monotonic() < deadline:
        if _holds(trigger, step.get("fill_when_text", "")):
            _fill(mount, step.get("leave", 0))
            break
        time.sleep(0.01)
    out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    stat = os.statvfs(mount)
    return {"rc": proc.returncode, "stdout": out, "stderr": err, "free_after": stat.f_bfree * stat.f_frsize,
            "filled": trigger is None or _holds(trigger, step.get("fill_when_text", ""))}  # fmt: skip


def main(plan_path: str) -> int:
    plan = json.loads(Path(plan_path).read_text())
    mount, out = Path(plan["mount"]), Path(plan["out"])
    mount.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={plan['size']}", "tmpfs", str(mount)], check=True)
    env = {**os.environ, **plan.get("env", {})}
    steps = [_run_step(step, mount, env) for step in plan["steps"]]
    (mount / "ballast").unlink(missing_ok=True)
    shutil.copytree(mount, out / "disk", symlinks=True)
    (out / "outcome.json").write_text(json.dumps({"steps": steps}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
