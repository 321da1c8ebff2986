"""Typed configuration: every experiment composes, presets shrink, choices come from the registries."""

from __future__ import annotations

import pytest

import activations
from speedlab import config, models
from speedlab.data import sources
from speedlab.errors import SpeedlabError
from tests.test_cli import EXPERIMENTS


@pytest.mark.parametrize("exp", EXPERIMENTS)
def test_every_experiment_composes_with_and_without_the_quick_preset(exp):
    full = config.compose("train", [f"+exp={exp}"])
    if full.model.name != "convnext":
        # The quick preset shrinks the reference's ConvNeXt; other families' experiments are small already.
        with pytest.raises(SpeedlabError, match=r"(?s)preset/quick.*not in '"):
            config.compose("train", [f"+exp={exp}", "+preset=quick"])
        return
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


@pytest.mark.parametrize("group", config.PLUGIN_GROUPS)
def test_plugin_group_choices_are_the_registry(group):
    """conf/model/*.yaml and conf/data/*.yaml are exactly the registered families and sources, and each composes
    into its own schema."""
    registry = {"model": models, "data": sources}[group]
    assert sorted(p.stem for p in (config.CONF_DIR / group).glob("*.yaml")) == registry.names()
    for name in registry.names():
        cfg = config.compose("train", [f"{group}={name}"])
        node = getattr(cfg, group)
        assert node.name == name and type(node).__name__ != "DictConfig", (group, name)


def test_unknown_family_or_source_names_the_valid_ones():
    with pytest.raises(SpeedlabError, match=r"(?s)model/resnet.*Available options in 'model'.*lenet5.*mlp.*timm"):
        config.compose("train", ["model=resnet"])
    with pytest.raises(SpeedlabError, match=r"(?s)data/cifar.*Available options in 'data'.*digits.*matrix_exp.*mnist"):
        config.compose("train", ["data=cifar"])


def test_a_key_of_another_family_is_refused_at_composition():
    with pytest.raises(SpeedlabError, match=r"(?s)model.depths.*not in 'MLPCfg'"):
        config.compose("train", ["model=mlp", "model.depths=[1]"])


def test_model_name_cannot_swap_the_family_behind_the_groups_back():
    cfg = config.compose("train", ["model.name=mlp"])
    from speedlab.data.spec import DataSpec

    with pytest.raises(
        SpeedlabError, match="model.name=mlp does not match.*choose a model family with the group, e.g. model=mlp"
    ):
        models.check(cfg.model, DataSpec("classification", (3, 32, 32), 10))
