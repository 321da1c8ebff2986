"""Write docs/configuration.md from the schemas: every command's keys (its job config) and every model family's and
data source's own keys, each with its default and the one-line description read from the schema's source.

    python scripts/config_docs.py            # rewrite docs/configuration.md
    python scripts/config_docs.py --check    # exit 1 when the file is stale (what the test runs)

`make docs-config` runs the first form. The page is never edited by hand: change a schema's comment instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from speedlab import cli, config, models  # noqa: E402
from speedlab.data import sources  # noqa: E402
from speedlab.fsutil import atomic_write_text  # noqa: E402
from speedlab.tables import markdown  # noqa: E402

TARGET = REPO / "docs" / "configuration.md"
SHARED = ("name", "data", "monitor", "tracking", "seed", "device", "model")
COMMANDS = {"train": "train", "profile": "profile", "parity": "parity", "export": "export", "bench": "bench",
            "data_prepare": "data prepare"}  # fmt: skip


def _value(value: object) -> str:
    text = "null" if value is None else str(value)
    return f"`{text}`" if text else "`''`"


def _rows(node: object, prefix: str = "", skip: tuple[str, ...] = ()) -> list[list[str]]:
    rows = []
    for key, value, description in config.describe_keys(node, prefix):
        if key.split(".")[0] in skip or (value is None and _is_section(node, key[len(prefix) :])):
            continue
        rows.append([f"`{key}`", _value(value), description])
    return rows


def _is_section(node: object, key: str) -> bool:
    for part in key.split("."):
        node = getattr(node, part, None)
    return node is not None and hasattr(node, "__dataclass_fields__")


def render() -> str:
    """The page, from the schemas as they are now: the defaults a fresh environment gets ($SPEEDLAB_DATA unset)."""
    saved = os.environ.pop("SPEEDLAB_DATA", None)
    try:
        return _render()
    finally:
        if saved is not None:
            os.environ["SPEEDLAB_DATA"] = saved


def _render() -> str:
    header = ["Key", "Default", "What it does"]
    out = [
        "# Configuration",
        "",
        "Generated from the schemas by `python scripts/config_docs.py` (`make docs-config`); a test fails when it is",
        "stale. Each command composes its own job config: the shared keys below plus its own sections, so",
        "`speedlab <command> --cfg job` and `--help` show only what that command reads. A value out of range, a",
        "renamed key or an unknown plug-in is refused at composition, naming the fix.",
        "",
        "## Shared by every command",
        "",
        "Every command has `name`, `data` (the source's keys: see below), `monitor` and `tracking`; the commands that",
        "build a model add `seed`, `device` and `model` (the family's keys: see below).",
        "",
        markdown(header, [r for r in _rows(cli.compose("train")) if r[0].strip("`").split(".")[0] in SHARED
                          and r[0].strip("`").split(".")[0] not in ("data", "model")]),
    ]  # fmt: skip
    for command, spoken in COMMANDS.items():
        job = cli.compose(command)
        doc = " ".join((type(job).__doc__ or "").split())
        own = _rows(job, skip=SHARED)
        out += ["", f"## `speedlab {spoken}`", "", doc[0].upper() + doc[1:] + ".", ""]
        out.append(markdown(header, own) if own else "No keys of its own: the shared ones and the data source's.")
    out += ["", "## Model families (`model=NAME`)", ""]
    for name in models.names():
        out += [f"### `model={name}`", "", markdown(header, _rows(cli.compose("train", [f"model={name}"]).model,
                                                                   "model.")), ""]  # fmt: skip
    out += ["## Data sources (`data=NAME`)", ""]
    for name in sources.names():
        out += [f"### `data={name}`", "", markdown(header, _rows(cli.compose("train", [f"data={name}"]).data,
                                                                  "data.")), ""]  # fmt: skip
    renamed = [[f"`{old.split(' ')[0]}`", new] for old, new in config.RENAMED.items()]
    out += ["## Renamed keys", "", "Refused with the new spelling:", "", markdown(["Old key", "Use"], renamed), ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/configuration.md is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = TARGET.read_text() if TARGET.is_file() else ""
        if current != text:
            print(f"{TARGET.relative_to(REPO)} is stale: run `make docs-config`", file=sys.stderr)
            return 1
        print(f"{TARGET.relative_to(REPO)} is up to date")
        return 0
    atomic_write_text(TARGET, text)
    print(f"wrote {TARGET.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
