"""speedlab's command line: `python -m speedlab <command> [hydra overrides and flags...]`.

Picks the command from the first argument. A Hydra-driven command (train, bench, export, profile, parity, data
prepare) is its own Hydra application, `python -m speedlab.entry.<command>`: this process execs it with the arguments
after the command, so Hydra reads a `sys.argv` that is exactly what the user typed there (overrides, `--cfg job`,
`-m`, `--config-dir`, `--help` work as Hydra documents them). The other commands (report, compare, inspect, data
download and synth) run here. Nothing heavy is imported before the exec: torch loads once, in the command's process.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from speedlab.errors import exit_code


@dataclass(frozen=True)
class Command:
    summary: str
    entry: str  # "module:function": a Hydra command's `python -m` module, or a function taking argv
    hydra: bool = True  # a Hydra application (exec'd), or a plain function of argv run in this process


COMMANDS: dict[str, Command] = {
    "train": Command(
        "train a model with the chosen speed levers (torch.compile, AMP, channels_last, ...)",
        entry="speedlab.entry.train:main",
    ),
    "bench": Command(
        "inference latency sweep over backends x batch sizes x precisions", entry="speedlab.entry.bench:main"
    ),
    "export": Command(
        "export ONNX / INT8 / TensorRT artifacts and check their parity", entry="speedlab.entry.export:main"
    ),
    "parity": Command(
        "train two variants side by side on identical batches: identical, equivalent or diverged?",
        entry="speedlab.entry.parity:main",
    ),
    "profile": Command("per-op time tables of each step phase and a Chrome trace", entry="speedlab.entry.profile:main"),
    "report": Command(
        "tables and plots from result.json files under artifacts/", entry="speedlab.report.command:main", hydra=False
    ),
    "compare": Command(
        "did B get slower than A? paired runs, significance, exit 1 on a regression (for CI)",
        entry="speedlab.compare:main",
        hydra=False,
    ),
    "inspect": Command(
        "summarise an ONNX file or engine and serve it with netron",
        entry="speedlab.export.inspection:main",
        hydra=False,
    ),
    "data": Command("download / synth / prepare (decode-cache) datasets", entry="speedlab.data.cli:main", hydra=False),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        "usage: python -m speedlab <command> [overrides...] [hydra flags]",
        "",
        "commands:",
        *(f"  {name:<{width}}  {cmd.summary}" for name, cmd in COMMANDS.items()),
        "",
        "Examples:",
        "  python -m speedlab train +exp=tc_amp +preset=quick",
        "  python -m speedlab train model=lenet5 data=digits",
        "  python -m speedlab train '+exp=glob(*)' --cfg job -m   # compose every experiment",
        "  python -m speedlab parity model=mlp data=matrix_exp --a compile.enabled=false --b compile.enabled=true",
        "  python -m speedlab data synth --out /tmp/fake-tin",
        "  python -m speedlab export +preset=quick weights=artifacts/runs/<train run>",
        "  python -m speedlab inspect model.onnx --summary-only",
        "  python -m speedlab compare runs/main runs/branch   # exit 1 on a significant regression",
        "",
        "`python -m speedlab <command> --help` shows a command's own options; `--version` the version.",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class Launch:
    """How a Hydra command starts: the module `python -m` runs, its argv, and environment to add."""

    module: str
    argv: list[str]
    env: dict[str, str]


def launch(name: str, rest: Sequence[str]) -> Launch | None:
    """The Hydra application for `speedlab <name> <rest...>`; None for a command that runs in this process."""
    cmd = COMMANDS[name]
    rest, env = list(rest), {}
    if name == "data":
        if not rest or rest[0] != "prepare":
            return None
        module, rest = "speedlab.entry.data_prepare", rest[1:]
    elif not cmd.hydra:
        return None
    else:
        module = cmd.entry.split(":")[0]
    if name == "parity":
        from speedlab.parity.argv import SIDES_ENV, split_argv

        rest, side_a, side_b = split_argv(rest)
        env[SIDES_ENV] = json.dumps([side_a, side_b])
    if int(os.environ.get("RANK", "0")) > 0:
        # Under torchrun only rank 0 writes: the other ranks get no run directory, .hydra/ or log file.
        rest += ["hydra.run.dir=.", "hydra.output_subdir=null", "hydra/job_logging=disabled"]
    return Launch(module, rest, env)


def dispatch(argv: Sequence[str], replace_process: bool = True) -> int:
    """Run `speedlab <argv...>`. A Hydra command replaces this process (`replace_process`, the command line) or, for
    an in-process caller, runs as a child process whose exit code is returned."""
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        import speedlab

        print(f"speedlab {speedlab.__version__} (result.json schema {speedlab.SCHEMA_VERSION})")
        return 0
    name, rest = argv[0], list(argv[1:])
    cmd = COMMANDS.get(name)
    if cmd is None:
        print(f"speedlab: unknown command {name!r}; valid commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    target = launch(name, rest)
    if target is not None:
        args, env = [sys.executable, "-m", target.module, *target.argv], {**os.environ, **target.env}
        if not replace_process:
            import subprocess

            return subprocess.run(args, env=env).returncode
        sys.stdout.flush()
        sys.stderr.flush()
        # The command's own process, with its own argv: nothing here rewrites sys.argv.
        os.execve(sys.executable, args, env)
    module, func = cmd.entry.split(":")
    return getattr(importlib.import_module(module), func)(rest) or 0


def main(argv: Sequence[str] | None = None) -> int:
    return exit_code(lambda: dispatch(sys.argv[1:] if argv is None else argv, replace_process=argv is None))


if __name__ == "__main__":
    sys.exit(main())
