"""Every command the README and docs/ show runs as written: each `python -m speedlab ...` line of a shell block
composes (every job of a sweep, both sides of a parity run) without running, each `make` target exists, each
`python scripts/...` script exists."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from speedlab import cli
from speedlab.__main__ import COMMANDS, launch
from speedlab.errors import SpeedlabError
from speedlab.parity.argv import split_argv
from tests.conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK = re.compile(r"```(?:bash|sh|shell|console)?\n(.*?)```", re.S)


def shell_lines(page: Path) -> list[tuple[str, str | None]]:
    """The commands of a page's shell blocks (continuation lines joined, comments and prompts dropped), each with
    the error the page shows it printing, if any (a transcript: `$ command` then `speedlab: error: ...`)."""
    lines: list[tuple[str, str | None]] = []
    for block in BLOCK.findall(page.read_text()):
        rows = block.replace("\\\n", " ").splitlines()
        for i, row in enumerate(rows):
            line = row.strip().removeprefix("$ ")
            if line and not line.startswith("#") and not line.startswith("speedlab: error"):
                shown = rows[i + 1 : i + 3] if rows[i + 1 : i + 2] and rows[i + 1].startswith("speedlab: error") else []
                lines.append((line, shown[-1].strip() if shown else None))
    return lines


def commands(prefix: str) -> list[tuple[str, list[str], str | None]]:
    """(page name, argv after `prefix`, the error shown) of every documented line that starts with `prefix`."""
    found = []
    for page in PAGES:
        for line, error in shell_lines(page):
            if line.startswith(prefix):
                # A placeholder (`<train run>`) stands for a value the reader fills in.
                words = shlex.split(re.sub(r"<[^>]*>", "placeholder", line.split(" #", 1)[0]))
                found.append((page.name, words[len(prefix.split()) :], error))
    return found


def scripts() -> list[tuple[str, str]]:
    return [(page, argv[0]) for page, argv, _ in commands("python ") if argv[0].startswith("scripts/")]


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


SPEEDLAB = commands("python -m speedlab ")


def test_the_docs_show_commands_of_every_kind():
    assert len(SPEEDLAB) >= 20 and commands("make ") and scripts()


@pytest.mark.parametrize(("page", "argv", "error"), SPEEDLAB, ids=[f"{p}: {' '.join(a)[:60]}" for p, a, _ in SPEEDLAB])
def test_every_documented_speedlab_command_composes(page, argv, error):
    """A command composes, or fails with the error its page shows."""
    assert argv and argv[0] in COMMANDS, f"{page}: unknown command {argv[:1]}"
    target = launch(argv[0], argv[1:])
    if target is None or "--help" in argv or "--cfg" in argv:
        return  # not a Hydra command (report, inspect, data synth ...), or one that only prints
    if "hydra/launcher=submitit_slurm" in argv and not installed("hydra_plugins.hydra_submitit_launcher"):
        pytest.skip("the page installs hydra-submitit-launcher first")
    command = target.module.rsplit(".", 1)[1]
    sides = [split_argv(argv[1:])[0] + side for side in split_argv(argv[1:])[1:]] if command == "parity" else [
        target.argv]  # fmt: skip
    for job in sides:
        if error is None:
            cli.validate(command, job)
        else:
            with pytest.raises(SpeedlabError) as raised:
                cli.validate(command, job)
            assert error in str(raised.value), f"{page}: the page shows {error!r}, the command says {raised.value}"


def test_every_documented_make_target_and_script_exists():
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, re.M))
    for page, argv, _ in commands("make "):
        assert argv[0] in targets, f"{page}: make {argv[0]} is not a Makefile target"
    for page, script in scripts():
        assert (REPO / script).is_file(), f"{page}: {script} does not exist"
