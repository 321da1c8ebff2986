"""Shared fixtures: small fake datasets on disk (TinyImageNet, MNIST), tiny configurations for every model family
and data source, and a runner for the real command line."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

# The cores the test session was started on, before any pinning: tests of a thread split widen to them again
# (`all_cores`). Kept in the environment, since the tests import this file again as `tests.conftest` after the
# pinning, and xdist's workers start from the controller's environment.
if hasattr(os, "sched_getaffinity"):
    os.environ.setdefault("SPEEDLAB_TEST_MACHINE_CORES", ",".join(map(str, sorted(os.sched_getaffinity(0)))))
MACHINE_CORES = [int(c) for c in os.environ.get("SPEEDLAB_TEST_MACHINE_CORES", "").split(",") if c]


def _pin_xdist_worker() -> None:
    """Under `pytest -n N`, each worker on cores of its own (gw0 the first share, gw1 the next, ...), before torch
    starts its thread pool. Unpinned, every worker runs one OpenMP thread per core of the machine: on 2 cores two
    workers run 4 spinning threads, and a parallel region can wait a whole scheduler slice for a preempted thread
    (a 30 µs convolution measured 8 ms). Subprocesses inherit the pinning. SPEEDLAB_TEST_PIN=0 turns it off."""
    worker, workers = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not (worker and workers and hasattr(os, "sched_setaffinity")) or os.environ.get("SPEEDLAB_TEST_PIN") == "0":
        return
    index, count = int(worker.removeprefix("gw")), int(workers)
    share = max(1, len(MACHINE_CORES) // count)
    os.sched_setaffinity(0, MACHINE_CORES[(index * share) % len(MACHINE_CORES) :][:share])


_pin_xdist_worker()

import torch  # noqa: E402  (after the pinning: torch sizes its thread pool at import)

from speedlab import cli  # noqa: E402
from speedlab.data.fake import write_fake_mnist, write_fake_tinyimagenet  # noqa: E402

cli.load_plugins()  # what the entry point does before composing: every registry's schemas in the ConfigStore

REPO_ROOT = Path(__file__).resolve().parent.parent
# One Inductor (and Triton) cache for the whole test session, subprocesses included (they inherit the environment):
# a graph one test compiles is warm for the next; it persists under artifacts/ between sessions of one checkout.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(REPO_ROOT / "artifacts" / "cache" / "inductor-tests"))
os.environ.setdefault("SPEEDLAB_NATIVE_CACHE", str(REPO_ROOT / "artifacts" / "cache" / "native-tests"))
os.environ.setdefault("TRITON_CACHE_DIR", str(REPO_ROOT / "artifacts" / "cache" / "triton-tests"))

REPO = Path(__file__).resolve().parent.parent
FAKE_CLASSES, FAKE_TRAIN, FAKE_VAL = 6, 12, 4  # per class; small enough to write in well under a second

# Overrides for a model and data small enough for a whole training run in about a second on 2 CPU cores; the
# commands that train add TRAIN_TINY.
TINY = [
    "+preset=quick", "data.train_size=192", "data.val_size=80", "data.num_classes=10", "data.image_size=32",
    "data.resolution=32", "model.depths=[1,1,1,1]", "model.dims=[8,16,32,64]",
]  # fmt: skip
TRAIN_TINY = ["trainer.epochs=1", "trainer.batch_size=32"]
# The same data without the quick preset, for any family.
TINY_DATA = [
    "data=synthetic", "data.train_size=192", "data.val_size=80", "data.num_classes=10", "data.image_size=32",
    "data.resolution=32",
]  # fmt: skip
# What each command adds to the tiny data: its own section's small settings.
TINY_SECTIONS = {"train": TRAIN_TINY, "profile": TRAIN_TINY, "parity": TRAIN_TINY, "bench": ["bench.batch_sizes=[1,3]"]}
# A small member of each family; a family missing here is tested with its defaults.
TINY_FAMILY = {
    "convnext": ["model.depths=[1,1,1,1]", "model.dims=[8,16,32,64]", "model.drop_path=0.0"],
    "timm": ["model.timm_name=test_resnet"],
    "torchvision": ["model.torchvision_name=squeezenet1_1"],
    "mlp": ["model.widths=[16]"],
    "lenet5": [],
    # A model speedlab has never seen (tests/user_models/), by import path.
    "custom": ["model.target=tests.user_models.nets.TinyCNN", "model.kwargs.classes=10", "model.kwargs.width=8"],
}


def tiny_family(name: str, command: str = "train") -> list[str]:
    """Overrides for a tiny model of family `name` on the tiny synthetic data, for `command`."""
    return [*TINY_DATA, *TINY_SECTIONS.get(command, []), f"model={name}", *TINY_FAMILY.get(name, [])]


def invoke(command: str, argv: Sequence[str]) -> int:
    """`speedlab <command> <argv...>` in this process: a Hydra command's entry module runs with `sys.argv` as the
    command line gives it after the exec (test harness only: the package never rewrites sys.argv); other commands
    through the dispatcher. Returns the exit code."""
    from speedlab.__main__ import launch, main
    from speedlab.errors import SpeedlabError

    try:
        target = launch(command, list(argv))
    except SpeedlabError as err:
        print(f"speedlab: error: {err}", file=sys.stderr)
        return 1
    if target is None:
        return main([command, *argv])
    saved_argv, saved_env = sys.argv, {k: os.environ.get(k) for k in target.env}
    sys.argv = [target.module, *target.argv]
    os.environ.update(target.env)
    try:
        return importlib.import_module(target.module).main() or 0
    except SystemExit as exit_:  # Hydra-run commands exit from inside the run
        return exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = saved_argv
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(autouse=True)
def _process_flags():
    """Process-wide switches a run may set (trainer.onednn) as they were before the test."""
    import torch

    onednn = torch.backends.mkldnn.enabled
    yield
    torch.backends.mkldnn.enabled = onednn


@pytest.fixture(autouse=True)
def private_artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):
    """Each test's outputs and caches (export's artifact cache among them) under its own folder, never the repo's
    artifacts/: a cached artifact from another test would hide a failure a test injects. Every result.json the test
    leaves there must satisfy the schema (tests that write broken ones on purpose are marked `broken_results`)."""
    root = tmp_path / "artifacts"
    monkeypatch.setenv("SPEEDLAB_ARTIFACTS", str(root))
    yield root
    if request.node.get_closest_marker("broken_results") is None:
        check_results(tmp_path)


def check_results(folder: Path) -> int:
    """Validate every result.json speedlab wrote under `folder` (those with a `schema_version`: the JSON some tests
    write by hand to feed a reader is not speedlab's) against the package's schema; returns how many it checked."""
    import jsonschema

    from speedlab import results

    validator = jsonschema.Draft202012Validator(results.schema())
    paths = []
    for path in folder.rglob("result.json"):
        try:
            data = json.loads(path.read_text())
        except ValueError:
            continue  # a test's deliberately damaged file
        if not isinstance(data, dict) or "schema_version" not in data:
            continue
        paths.append(path)
        errors = sorted(validator.iter_errors(data), key=lambda e: list(e.path))
        assert not errors, f"{path} breaks the result.json schema: " + "; ".join(
            f"{'/'.join(map(str, e.path)) or '(top)'}: {e.message[:200]}" for e in errors[:5]
        )
    return len(paths)


def _session_run(run_dir: Path, command: str, argv: list[str]) -> Path:
    """`command` run once for the session in `run_dir`, its caches beside it (not in any one test's folder)."""
    saved = os.environ.get("SPEEDLAB_ARTIFACTS")
    os.environ["SPEEDLAB_ARTIFACTS"] = str(run_dir.parent / "artifacts")
    try:
        assert invoke(command, [*argv, f"hydra.run.dir={run_dir}"]) == 0
        check_results(run_dir)
    finally:
        if saved is None:
            os.environ.pop("SPEEDLAB_ARTIFACTS", None)
        else:
            os.environ["SPEEDLAB_ARTIFACTS"] = saved
    return run_dir


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny ConvNeXt trained for two epochs (TINY), shared by every test that needs a trained model to export,
    bench, profile or report: its run directory (checkpoint.pt, result.json). Never modified."""
    return _session_run(tmp_path_factory.mktemp("trained_tiny") / "train", "train",
                        [*TINY, *TRAIN_TINY, "trainer.epochs=2"])  # fmt: skip


@pytest.fixture(scope="session")
def exported_tiny(trained_tiny: Path) -> Path:
    """`trained_tiny` exported once to ONNX fp32 and INT8 (parity on 40 images): the export run's directory, for
    the tests that bench, inspect or check an exported trained model. Never modified."""
    return _session_run(trained_tiny.parent / "export", "export",
                        [*TINY, "export.parity_batch_size=40", "export.formats=[onnx,int8]",
                         f"weights={trained_tiny}"])  # fmt: skip


@pytest.fixture(scope="session")
def fake_tin_pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fake TinyImageNet (real JPEGs) plus its zip; never modified, copy it with `fake_tin` to change it."""
    root = tmp_path_factory.mktemp("fake_tin")
    write_fake_tinyimagenet(
        root, classes=FAKE_CLASSES, train_per_class=FAKE_TRAIN, val_per_class=FAKE_VAL, make_zip=True
    )
    return root


@pytest.fixture
def fake_tin(fake_tin_pristine: Path, tmp_path: Path) -> Path:
    """A private copy of the fake TinyImageNet (without its zip) that a test may corrupt or touch."""
    root = tmp_path / "data"
    shutil.copytree(fake_tin_pristine / "tiny-imagenet-200", root / "tiny-imagenet-200")
    return root


@pytest.fixture(scope="session")
def fake_mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MNIST's four gzipped IDX files (200 training and 50 test images) in one folder; never modified."""
    root = tmp_path_factory.mktemp("fake_mnist")
    write_fake_mnist(root, train=200, val=50)
    return root


@pytest.fixture
def all_cores():
    """The test runs on every core the session started with (undoing the worker's pinning) and torch on a thread
    each, so a thread split it tests really splits; the pinning and the thread count are restored after."""
    if not MACHINE_CORES:
        yield
        return
    kept, kept_threads = os.sched_getaffinity(0), torch.get_num_threads()
    os.sched_setaffinity(0, MACHINE_CORES)
    torch.set_num_threads(len(MACHINE_CORES))
    yield
    os.sched_setaffinity(0, kept)
    torch.set_num_threads(kept_threads)


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run_main(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """`python -m speedlab ...` in this process (the same dispatch and messages as the command line, without a
    second of interpreter start-up), with outputs under tmp_path/artifacts."""
    from speedlab.__main__ import COMMANDS, main

    def run(*args: str) -> Outcome:
        monkeypatch.setenv("SPEEDLAB_ARTIFACTS", str(tmp_path / "artifacts"))
        capsys.readouterr()
        try:
            code = invoke(args[0], args[1:]) if args and args[0] in COMMANDS else main(list(args))
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        out, err = capsys.readouterr()
        return Outcome(code, out, err)

    return run


@pytest.fixture
def run_cli(tmp_path: Path):
    """Run `python -m speedlab ...` in a subprocess, with outputs under tmp_path/artifacts."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        full_env = {**os.environ, "SPEEDLAB_ARTIFACTS": str(tmp_path / "artifacts"), **(env or {})}
        return subprocess.run(
            [sys.executable, "-m", "speedlab", *args],
            cwd=REPO,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


# The fault drill (`make fault-drill`, scripts/fault_drill.py) runs the tests marked `drill` and prints one row per
# test from what each one recorded here. Under the drill (SPEEDLAB_DRILL=quick) the training faults run on the quick
# preset's model at 64 px (fewer images, so that 8 epochs stay short); in the suites on TINY.
DRILL_QUICK = os.environ.get("SPEEDLAB_DRILL") == "quick"
FAULT_RUN = ["+preset=quick", "data.train_size=1280", "data.val_size=256"] if DRILL_QUICK else [*TINY, *TRAIN_TINY]


@pytest.fixture
def drill(request: pytest.FixtureRequest, record_property):
    """`drill(injected=..., did=..., lost=...)`: this test's row of the fault drill, with the figures it measured.
    The scenario comes from the test's `@pytest.mark.drill("N. name")`."""
    marker = request.node.get_closest_marker("drill")
    record_property("drill_scenario", marker.args[0] if marker else request.node.name)

    def note(injected: str, did: str, lost: str = "nothing finished") -> None:
        record_property("drill_injected", injected)
        record_property("drill_did", did)
        record_property("drill_lost", lost)

    return note
