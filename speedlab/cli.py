"""The entry layer of the Hydra-driven commands: plug-in discovery, up-front checks, and Hydra's own `@hydra.main`.

`python -m speedlab train ...` execs `python -m speedlab.train ...` (see `speedlab/__main__.py`), so each command is
a plain Hydra application whose `sys.argv` is exactly what the user typed after the command: Hydra parses it itself,
and `--config-dir`, `--config-name`, `-m`, `--cfg`, `--info` and `--help` work as Hydra documents them. Before Hydra
runs anything, `run` composes every job the command line asks for (each job of a sweep too) through Hydra's public
Compose API and converts it to the command's job dataclasses, so a bad override, an out-of-range value, a renamed
key or an unknown plug-in (step, backend, format) is one `speedlab: error:` line before any work.

Only public Hydra API is used: `hydra.main`, the Compose API, `hydra.core` (ConfigStore, HydraConfig, the override
parser).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import fields
from functools import cache
from itertools import product
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from speedlab import config
from speedlab.config import CONF_DIR, ConfigError, RunContext
from speedlab.errors import SpeedlabError, exit_code


@cache
def load_plugins() -> None:
    """Import every plug-in package once (model families, data sources, step variants, bench backends, export
    formats), which registers their schemas: the entry point runs it before any composition."""
    import speedlab.bench.backends
    import speedlab.data.sources
    import speedlab.export.formats
    import speedlab.models
    import speedlab.train.steps

    for registry in (speedlab.models, speedlab.data.sources, speedlab.train.steps, speedlab.bench.backends,
                     speedlab.export.formats):  # fmt: skip
        registry.names()
    config.with_backend_options(speedlab.bench.backends.options())


def registry_choices() -> dict[str, Callable[[], list[str]]]:
    """Keys whose valid values are a registry's names: checked when a job is composed."""
    import speedlab.bench.backends
    import speedlab.bench.levers
    import speedlab.export.formats
    import speedlab.train.steps

    return {
        "trainer.step": speedlab.train.steps.names,
        "bench.backends": speedlab.bench.backends.choices,
        "bench.levers": speedlab.bench.levers.names,
        "export.formats": speedlab.export.formats.names,
    }


# ----------------------------------------------------------------------------------------------------- composition
def compose(command: str, overrides: Sequence[str] = (), *, config_dir: str | None = None,
            config_name: str | None = None) -> Any:  # fmt: skip
    """The typed job config of `command` with `overrides`, without starting a run; bad input raises SpeedlabError."""
    return compose_resolved(command, overrides, config_dir=config_dir, config_name=config_name)[0]


def compose_resolved(command: str, overrides: Sequence[str] = (), *, config_dir: str | None = None,
                     config_name: str | None = None) -> tuple[Any, dict[str, Any]]:  # fmt: skip
    """`compose`, plus the resolved config as plain data (what result.json records of it)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    load_plugins()
    refuse_renamed(command, overrides)
    extra = [f"hydra.searchpath=[file://{Path(config_dir).resolve()}]"] if config_dir else []
    try:
        if GlobalHydra.instance().is_initialized():  # inside a running command (parity composes its two sides)
            cfg = hydra_compose(config_name=config_name or command, overrides=[*overrides, *extra])
        else:
            with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
                cfg = hydra_compose(config_name=config_name or command, overrides=[*overrides, *extra])
        job = config.typed(cfg)
    except ConfigError as err:
        raise SpeedlabError(f"invalid configuration for {command}: {err}") from None
    except (HydraException, OmegaConfBaseException) as err:
        raise SpeedlabError(f"invalid configuration for {command}:\n{hint(command, config.explain(err))}") from None
    check_choices(job)
    return job, config.resolved_dict(cfg)


def check_choices(job: Any) -> None:
    """Refuse a value that names no registered plug-in (a step, backend or export format), naming the valid ones,
    and a combination the chosen step variant cannot run."""
    for key, names in registry_choices().items():
        section, leaf = key.split(".")
        if not hasattr(job, section):
            continue
        value = getattr(getattr(job, section), leaf)
        values = value if isinstance(value, list) else [value]
        unknown = [str(v) for v in values if str(v) not in names()]
        if unknown:
            raise SpeedlabError(f"{key}: unknown {', '.join(unknown)}; valid: {', '.join(names())}")
    if hasattr(job, "trainer"):
        import speedlab.train.steps

        speedlab.train.steps.variant(job.trainer.step).check(job)  # combinations this step cannot run


def _override_key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def refuse_renamed(command: str, overrides: Sequence[str]) -> None:
    """An old key name, or a key a group choice sets, refused with what to write instead."""
    for override in overrides:
        key = _override_key(override)
        if command == "export" and key.startswith("bench."):
            raise SpeedlabError(f"{override}: export has no bench section; the TensorRT engines' batch range is "
                                "export.tensorrt_batch_range=[MIN,MAX]")  # fmt: skip
        why = config.renamed_hint(key)
        if why and not key.startswith("hydra."):
            raise SpeedlabError(f"{override}: {why}")


# What a training lever is called for inference: a training experiment given to bench (`bench +exp=cpu_fast`) is
# refused, and the refusal says what bench offers instead.
INFERENCE_LEVERS = {
    "compile": "bench.backends=[inductor] (bench.inductor.mode, freezing, cpp_wrapper) or [aotinductor]",
    "amp": "bench.precisions=[bf16] (autocast) with bench.levers=[half_weights] for bf16 weights",
    "trainer": "bench.levers=[channels_last,inference_mode]",
    "optim": "none: inference has no optimizer",
}


def hint(command: str, text: str) -> str:
    """A key that belongs to another command's job (e.g. `compile` for bench) gets a line saying whose it is."""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped.startswith("full_key:"):
            continue
        section = stripped.removeprefix("full_key:").strip().split(".")[0]
        owners = [name for name, job in config.JOBS.items() if section in {f.name for f in fields(job)}]
        if owners and command not in owners:
            inference = f"\nbench's own levers: {INFERENCE_LEVERS[section]}" if command == "bench" and section in \
                INFERENCE_LEVERS else ""  # fmt: skip
            return (f"{text}\n`{section}` is a setting of {', '.join(owners)}, not of {command}: `{command} --cfg job` "
                    f"lists what it reads{inference}")  # fmt: skip
    return text


# ------------------------------------------------------------------------------------------------ the command line
def hydra_arguments() -> argparse.ArgumentParser:
    """The flags Hydra documents for an application's command line (`--help` of any Hydra app), parsed here only to
    find the overrides, the config directory and name, and whether the run only prints."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("overrides", nargs="*")
    for flags in (("--help", "-h"), ("--hydra-help",), ("--resolve",), ("--run", "-r"), ("--multirun", "-m"),
                  ("--shell-completion", "-sc"), ("--version",)):  # fmt: skip
        parser.add_argument(*flags, action="store_true")
    for flags in (("--cfg", "-c"), ("--package", "-p"), ("--config-path", "-cp"), ("--config-name", "-cn"),
                  ("--config-dir", "-cd"), ("--experimental-rerun",)):  # fmt: skip
        parser.add_argument(*flags)
    parser.add_argument("--info", "-i", nargs="?", const="all")
    return parser


def parse(argv: Sequence[str]) -> argparse.Namespace:
    try:
        args, unknown = hydra_arguments().parse_known_args(list(argv))
    except SystemExit:
        raise SpeedlabError(f"cannot read the command line {' '.join(argv)!r}; see --help") from None
    args.overrides = [*args.overrides, *(u for u in unknown if not u.startswith("-"))]
    return args


def prints_only(args: argparse.Namespace) -> bool:
    """Whether Hydra will only print (help, config, info) and start no run."""
    return bool(args.help or args.hydra_help or args.cfg or args.info or args.shell_completion or args.version)


def sweep_jobs(overrides: Sequence[str]) -> list[list[str]]:
    """Each job's overrides of a sweep: the cartesian product of the sweep overrides (comma lists, ranges, glob() over
    a group's options), expanded by Hydra's public override parser. Call inside an initialised Hydra context."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    choices = []
    for override in parser.parse_overrides(list(overrides)):
        key = override.get_key_element()
        if override.is_sweep_override():
            if not override.is_discrete_sweep():
                raise SpeedlabError(f"{override.input_line}: only lists, ranges and glob() sweep here")
            choices.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        else:
            choices.append([override.input_line])
    return [list(job) for job in product(*choices)]


def jobs_of(command: str, args: argparse.Namespace) -> list[list[str]]:
    """The overrides of every job the command line asks for (one job without -m)."""
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if not args.multirun:
        return [list(args.overrides)]
    load_plugins()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return sweep_jobs(args.overrides)
    except (HydraException, OmegaConfBaseException) as err:
        raise SpeedlabError(f"invalid sweep for {command}:\n{config.explain(err)}") from None


def validate(command: str, argv: Sequence[str]) -> None:
    """Compose every job `argv` asks for, so a bad override fails as one `speedlab: error:` before any run starts
    (Hydra itself would report it in its own format, and a bad value in a sweep only when that job's turn comes)."""
    args = parse(argv)
    if prints_only(args):
        return  # Hydra reports a bad override itself while printing
    for job in jobs_of(command, args):
        compose(command, job, config_dir=args.config_dir, config_name=args.config_name)


def print_sweep_configs(command: str, args: argparse.Namespace) -> int:
    """`--cfg X -m` (which Hydra itself refuses): every job of a sweep composed and printed; returns the count."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    load_plugins()
    extra = [f"hydra.searchpath=[file://{Path(args.config_dir).resolve()}]"] if args.config_dir else []
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        jobs = sweep_jobs(args.overrides)
        for num, job in enumerate(jobs):
            cfg = hydra_compose(config_name=args.config_name or command, overrides=[*job, *extra],
                                return_hydra_config=args.cfg != "job")  # fmt: skip
            if args.cfg == "hydra":
                cfg = cfg.hydra
            print(f"# job {num}: {' '.join(job) or '(no overrides)'}")
            print(OmegaConf.to_yaml(cfg, resolve=args.resolve))
    return len(jobs)


HELP_GROUPS = ("model", "data", "exp", "preset", "tracking")
HELP_FLAGS = (
    "--cfg job|hydra|all [--resolve]   print the composed config instead of running",
    "--info [config|defaults|defaults-tree|plugins|searchpath]   Hydra's information",
    "-m, --multirun                    one job per combination of comma lists, ranges, glob()",
    "--config-dir DIR                  add your own configs (experiments, primaries) to the search path",
    "--config-name NAME                another primary config (e.g. one in --config-dir)",
    "--hydra-help                      Hydra's own help",
)


def help_text(command: str, args: argparse.Namespace) -> str:
    """`speedlab <command> --help`: what the command reads, each key with its value under the given overrides and its
    one-line description (from the schemas' own comments), the groups to choose from, and Hydra's flags."""
    job = compose(command, args.overrides, config_dir=args.config_dir, config_name=args.config_name)
    spoken = command.replace("_", " ")
    summary = " ".join((type(job).__doc__ or "").split()).rstrip(".")
    lines = [f"speedlab {spoken}: {summary}", "",
             f"usage: speedlab {spoken} [KEY=VALUE ...] [GROUP=OPTION ...] [+preset=quick] [flags]", "",
             "Groups (GROUP=OPTION; exp and preset are added: +exp=NAME):"]  # fmt: skip
    for group in HELP_GROUPS:
        if (group == "model" and not hasattr(job, "model")) or (group == "exp" and not hasattr(job, "trainer")):
            continue  # experiments are training diffs: they apply to the commands that train
        lines.append(f"  {group}: {', '.join(sorted(p.stem for p in (CONF_DIR / group).glob('*.yaml')))}")
    lines += ["", "Keys (their values with these overrides; `--cfg job` prints them as YAML):"]
    for key, value, description in config.describe_keys(job):
        shown = f"{key}:" if value is None and _is_section(job, key) else f"{key}={_shown(value)}"
        lines.append(f"  {shown:<44} {_one_line(description)}")
    lines += ["", "Flags:", *(f"  {flag}" for flag in HELP_FLAGS)]
    return "\n".join(lines)


def _one_line(text: str, width: int = 96) -> str:
    first = text.split(". ")[0].rstrip(".")
    return first if len(first) <= width else first[: width - 3].rsplit(" ", 1)[0] + " ..."


def _shown(value: Any) -> str:
    text = "null" if value is None else str(value).replace(" ", "")
    return text if len(text) <= 28 else text[:25] + "..."


def _is_section(job: Any, key: str) -> bool:
    node = job
    for part in key.split("."):
        node = getattr(node, part, None)
    return node is not None and hasattr(node, "__dataclass_fields__")


def run(command: str, task: Callable[[RunContext], int | None]) -> int:
    """The body of a Hydra command's `python -m` entry: check every job, then hand `sys.argv` to Hydra unchanged and
    call `task` once per composed run. Returns the exit code."""
    from speedlab.device import quiet_cuda_home_warning

    quiet_cuda_home_warning()
    load_plugins()
    argv = sys.argv[1:]
    args = parse(argv)
    if args.help:
        print(help_text(command, args))
        return 0
    if args.cfg and args.multirun:
        print_sweep_configs(command, args)
        return 0
    validate(command, argv)
    failed: list[str] = []  # a sweep's failed jobs: the sweep goes on, and exits 1 at its end

    def hydra_task(cfg: DictConfig) -> None:
        hydra_cfg = HydraConfig.get()
        multirun = hydra_cfg.mode == RunMode.MULTIRUN
        try:
            job = config.typed(cfg)
            check_choices(job)
            ctx = RunContext(
                cfg=job,
                resolved=config.resolved_dict(cfg),
                run_dir=Path(hydra_cfg.runtime.output_dir),
                multirun=multirun,
                overrides=tuple(hydra_cfg.overrides.task),
                sweep=Path(hydra_cfg.sweep.dir).name if hydra_cfg.mode == RunMode.MULTIRUN else None,
            )
            code = task(ctx)
        except SpeedlabError as err:  # bad input: one clear message, no traceback (result.json says failed)
            print(f"speedlab: error: {err}", file=sys.stderr)
            code = 1
        if code and not multirun:
            sys.exit(code)
        if code:
            failed.append(f"{hydra_cfg.runtime.output_dir} ({' '.join(hydra_cfg.overrides.task) or 'defaults'})")

    hydra.main(config_path=str(CONF_DIR), config_name=command, version_base="1.3")(hydra_task)()
    if failed:
        print(f"speedlab: {len(failed)} job{'s' * (len(failed) > 1)} of the sweep failed (exit 1):\n  "
              + "\n  ".join(failed), file=sys.stderr)  # fmt: skip
        return 1
    return 0


def entry(command: str, task: Callable[[RunContext], int | None]) -> int:
    """`run` with speedlab's error handling: what a command's `main()` returns as its exit code."""
    return exit_code(lambda: run(command, task))
