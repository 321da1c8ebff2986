"""The command line: help, unknown commands, Hydra flags after the command, composition errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from speedlab.__main__ import COMMANDS

EXPERIMENTS = sorted(p.stem for p in (Path(__file__).resolve().parent.parent / "conf" / "exp").glob("*.yaml"))
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
    out = run_main("train", "+exp=glob(*)", "--cfg", "job", "-m")
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
        ("data.pipeline=fast", ["data.pipeline", "'fast'", "device, classic"]),
    ],
)
def test_bad_config_fails_before_any_work_naming_the_key(run_main, override, expected):
    out = run_main("train", override)
    assert out.returncode == 1
    for text in expected:
        assert text in out.stderr, (text, out.stderr)
    assert "To append to your config" not in out.stderr  # Hydra's hint would suggest adding the misspelt key
