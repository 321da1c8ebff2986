"""Typed configuration: every experiment composes, presets shrink, choices come from the registries."""

from __future__ import annotations

import pytest

import activations
from speedlab import config
from speedlab.errors import SpeedlabError
from tests.test_cli import EXPERIMENTS


@pytest.mark.parametrize("exp", EXPERIMENTS)
def test_every_experiment_composes_with_and_without_the_quick_preset(exp):
    full = config.compose("train", [f"+exp={exp}"])
    quick = config.compose("train", [f"+exp={exp}", "+preset=quick"])
    assert isinstance(full, config.SpeedlabCfg)
    assert full.name == quick.name == exp
    assert quick.data.name == "synthetic" and quick.data.resolution == 64 and quick.trainer.epochs == 1
    # the preset shrinks, it does not change what the experiment is about
    assert (quick.compile.enabled, quick.amp.enabled, quick.model.activation) == (
        full.compile.enabled,
        full.amp.enabled,
        full.model.activation,
    )


def test_defaults_match_the_reference_study():
    cfg = config.compose("train")
    assert cfg.data.name == "tinyimagenet" and cfg.data.resolution == 224 and cfg.data.image_size == 64
    assert cfg.trainer.batch_size == 128 and cfg.model.activation == "gelu"
    assert cfg.bench.batch_sizes == [1, 64]


def test_every_registered_activation_is_a_valid_choice():
    assert {str(a) for a in config.ActivationName} == set(activations.names())


@pytest.mark.parametrize("command", config.HYDRA_COMMANDS)
def test_every_command_config_composes(command):
    assert isinstance(config.compose(command), config.SpeedlabCfg)


def test_data_root_defaults_to_env(monkeypatch):
    monkeypatch.setenv("SPEEDLAB_DATA", "/somewhere/else")
    assert config.compose("train").data.root == "/somewhere/else"


def test_compose_error_names_key_and_choices():
    with pytest.raises(SpeedlabError, match=r"(?s)model\.activation.*expected one of \[.*relu"):
        config.compose("train", ["model.activation=gleu"])
