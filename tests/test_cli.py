"""The command line: help, unknown commands, Hydra flags after the command, composition errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from speedlab.__main__ import COMMANDS
from tests.conftest import REPO

ALL_EXPERIMENTS = sorted(p.stem for p in (Path(__file__).resolve().parent.parent / "conf" / "exp").glob("*.yaml"))
# Training experiments, and bench's (`*_infer`: inference levers, which train refuses with bench's own hint).
EXPERIMENTS = [e for e in ALL_EXPERIMENTS if not e.endswith("_infer")]
INFERENCE_EXPERIMENTS = [e for e in ALL_EXPERIMENTS if e.endswith("_infer")]
REFERENCE_ROWS = ["vanilla", "tc", "amp", "tc_amp", "hardswish", "relu", "fastswish", "tc_hardswish", "tc_relu",
                  "tc_fastswish"]  # fmt: skip


def test_help_lists_every_command_one_line_each(run_cli):
    out = run_cli("--help")
    assert out.returncode == 0
    for name in ("train", "bench", "export", "profile", "report", "inspect", "data"):
        assert sum(line.strip().startswith(f"{name} ") for line in out.stdout.splitlines()) == 1, name


def test_unknown_command_exits_2_naming_the_valid_ones(run_main):
    out = run_main("trian")
    assert out.returncode == 2
    assert "unknown command 'trian'" in out.stderr
    assert all(name in out.stderr for name in COMMANDS)


def test_reference_rows_ship_as_experiments():
    assert set(REFERENCE_ROWS) <= set(EXPERIMENTS)


def test_glob_multirun_composes_every_experiment(run_main):
    out = run_main("train", "+exp=glob(*,exclude=*_infer)", "--cfg", "job", "-m")
    assert out.returncode == 0, out.stderr
    names = [line.split(":", 1)[1].strip() for line in out.stdout.splitlines() if line.startswith("name:")]
    assert sorted(names) == EXPERIMENTS


def test_cfg_job_prints_the_composed_config(run_main):
    out = run_main("train", "+exp=tc_amp", "+preset=quick", "--cfg", "job")
    assert out.returncode == 0, out.stderr
    assert "name: tc_amp" in out.stdout and "resolution: 64" in out.stdout


def test_hydra_help_works_after_the_command(run_main):
    out = run_main("train", "--help")
    assert out.returncode == 0
    assert "exp" in out.stdout and "preset" in out.stdout


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model.activation=gleu", ["model.activation", "'gleu'", "gelu, gelu_tanh, hardswish, relu, silu"]),
        ("amp.enabled=maybe", ["amp.enabled", "'maybe'", "not a valid bool"]),
        ("model.activaton=relu", ["model.activaton", "not in 'ConvNeXtCfg'"]),
        ("model=resnet", ["model/resnet", "convnext", "lenet5", "mlp", "timm", "torchvision"]),
        ("data=imgnet", ["data/imgnet", "digits", "imagefolder", "matrix_exp", "mnist", "synthetic", "tinyimagenet"]),
        ("data.feed=fast", ["data.feed", "'fast'", "device, loader"]),
    ],
)
def test_bad_config_fails_before_any_work_naming_the_key(run_main, override, expected):
    out = run_main("train", override)
    assert out.returncode == 1
    for text in expected:
        assert text in out.stderr, (text, out.stderr)
    assert "To append to your config" not in out.stderr  # Hydra's hint would suggest adding the misspelt key


MATRIX = ["model=mlp", "data=matrix_exp", "data.train_size=64", "data.val_size=32", "trainer.batch_size=32",
          "trainer.epochs=1", "monitor.enabled=false"]  # fmt: skip


def test_config_dir_adds_a_users_experiment_in_a_real_run(run_cli, tmp_path):
    """`--config-dir DIR` as Hydra documents it, in a real run (not only with --cfg): the case that failed when the
    dispatcher parsed Hydra's flags itself."""
    (tmp_path / "conf" / "exp").mkdir(parents=True)
    (tmp_path / "conf" / "exp" / "mine.yaml").write_text("# @package _global_\nname: mine\ntrainer:\n  max_steps: 1\n")
    out = run_cli("train", "--config-dir", str(tmp_path / "conf"), "+exp=mine", *MATRIX)
    assert out.returncode == 0, out.stderr
    runs = list((tmp_path / "artifacts" / "runs").glob("*-train-mine"))
    assert len(runs) == 1 and json.loads((runs[0] / "result.json").read_text())["status"] == "ok"


def test_config_name_chooses_a_users_primary_config(run_cli, tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "quick_mlp.yaml").write_text("defaults:\n  - train\n  - _self_\nname: quick_mlp\n")
    out = run_cli("train", "--config-dir", str(tmp_path / "conf"), "--config-name", "quick_mlp", *MATRIX,
                  "--cfg", "job")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "name: quick_mlp" in out.stdout and "trainer:" in out.stdout


def test_info_and_cfg_are_hydras_own(run_cli):
    info = run_cli("bench", "--info", "defaults")
    assert info.returncode == 0 and "Defaults List" in info.stdout and "bench_schema" in info.stdout
    cfg = run_cli("bench", "--cfg", "job")
    assert cfg.returncode == 0
    top = {line.split(":")[0] for line in cfg.stdout.splitlines() if line and not line.startswith(" ")}
    assert {"bench", "export", "model", "data", "weights"} <= top
    assert not top & {"trainer", "optim", "compile", "amp", "profile", "parity", "resume"}


def test_multirun_runs_every_job(run_cli, tmp_path):
    out = run_cli("train", "-m", *MATRIX, "trainer.max_steps=1", "seed=0,1")
    assert out.returncode == 0, out.stderr
    results = list((tmp_path / "artifacts" / "sweeps").glob("*/*/result.json"))
    assert len(results) == 2 and "sweep summary" in out.stdout


def test_a_bad_value_in_a_later_sweep_job_fails_before_the_first_runs(run_cli, tmp_path):
    out = run_cli("train", "-m", *MATRIX, "trainer.max_steps=1,0")
    assert out.returncode == 1
    assert "trainer.max_steps=0: must be at least 1" in out.stderr
    assert not (tmp_path / "artifacts" / "sweeps").exists()


@pytest.mark.parametrize("command", ["train", "bench", "export", "profile", "parity"])
def test_help_lists_only_the_commands_keys_each_with_a_description(run_main, command):
    out = run_main(command, "--help")
    assert out.returncode == 0, out.stderr
    keys = [line.split()[0] for line in out.stdout.splitlines() if line.startswith("  ") and "=" in line.split()[0]]
    sections = {key.split("=")[0].split(".")[0] for key in keys}
    training = {"trainer", "optim", "compile", "amp"}
    assert bool(training & sections) == (command in ("train", "profile", "parity")), sections
    assert ("bench" in sections) == (command == "bench") and "weights" in sections | {"weights"}
    described = [line for line in out.stdout.splitlines() if line.startswith("  ") and "=" in line.split()[0]]
    assert all(len(line.split(None, 1)) == 2 for line in described), [d for d in described if len(d.split()) < 2]


def test_every_key_of_every_job_and_plugin_schema_has_a_description():
    from speedlab import cli, config, models
    from speedlab.data import sources

    jobs = [cli.compose(command) for command in config.JOBS]
    jobs += [cli.compose("train", [f"model={name}"]) for name in models.names()]
    jobs += [cli.compose("train", [f"data={name}"]) for name in sources.names()]
    missing = {key for job in jobs for key, _, description in config.describe_keys(job) if not description}
    assert not missing, sorted(missing)


def test_the_configuration_page_is_generated_from_the_schemas_and_current():
    """docs/configuration.md names every key and is what `make docs-config` writes today."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "scripts/config_docs.py", "--check"], cwd=REPO, capture_output=True,
                         text=True)  # fmt: skip
    assert out.returncode == 0, out.stderr
    page = (REPO / "docs" / "configuration.md").read_text()
    from speedlab import cli, config

    for command in config.JOBS:
        for key, value, _ in config.describe_keys(cli.compose(command)):
            assert value is None or f"`{key}`" in page, (command, key)
