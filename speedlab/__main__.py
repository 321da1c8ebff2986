"""speedlab's command line: `python -m speedlab <command> [hydra overrides and flags...]`.

Picks the command from the first argument and hands everything after it to the command (for most commands: to
Hydra, so overrides, `--cfg job`, `-m` and `--help` work as usual).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from speedlab.device import quiet_cuda_home_warning
from speedlab.errors import SpeedlabError


@dataclass(frozen=True)
class Command:
    summary: str
    entry: str  # "module:function" taking argv and returning an exit code


COMMANDS: dict[str, Command] = {
    "train": Command(
        "train a model with the chosen speed levers (torch.compile, AMP, channels_last, ...)",
        entry="speedlab.train.command:main",
    ),
    "bench": Command(
        "inference latency sweep over backends x batch sizes x precisions", entry="speedlab.bench.command:main"
    ),
    "export": Command(
        "export ONNX / INT8 / TensorRT artifacts and check their parity", entry="speedlab.export.command:main"
    ),
    "parity": Command(
        "train two variants side by side on identical batches: identical, equivalent or diverged?",
        entry="speedlab.parity.command:main",
    ),
    "profile": Command("per-op forward/backward time tables and a Chrome trace", entry="speedlab.profiling:main"),
    "report": Command("tables and plots from result.json files under artifacts/", entry="speedlab.report.command:main"),
    "inspect": Command(
        "summarise an ONNX file or engine and serve it with netron",
        entry="speedlab.export.inspection:main",
    ),
    "data": Command("download / synth / prepare (decode-cache) datasets", entry="speedlab.data.cli:main"),
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
        "  python -m speedlab export +preset=quick checkpoint=artifacts/runs/<train run>",
        "  python -m speedlab inspect model.onnx --summary-only",
        "",
        "`python -m speedlab <command> --help` shows a command's own options.",
    ]
    return "\n".join(lines)


def dispatch(argv: Sequence[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], list(argv[1:])
    cmd = COMMANDS.get(name)
    if cmd is None:
        print(f"speedlab: unknown command {name!r}; valid commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module, func = cmd.entry.split(":")
    return getattr(importlib.import_module(module), func)(rest) or 0


def main(argv: Sequence[str] | None = None) -> int:
    quiet_cuda_home_warning()
    try:
        return dispatch(sys.argv[1:] if argv is None else argv)
    except SpeedlabError as err:
        print(f"speedlab: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("speedlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
