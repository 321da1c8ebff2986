"""Typed configuration: one job schema per command, every experiment composes, presets shrink every family, choices
come from the registries, and bad input (an old key, a value out of range, an unknown plug-in) is refused at
composition with what to write instead."""

from __future__ import annotations

import dataclasses
import re

import pytest

import activations
from speedlab import cli, config, models
from speedlab.data import sources
from speedlab.errors import SpeedlabError
from tests.test_cli import EXPERIMENTS, INFERENCE_EXPERIMENTS


@pytest.mark.parametrize("exp", INFERENCE_EXPERIMENTS)
def test_every_inference_experiment_composes_for_bench_and_train_refuses_it(exp):
    job = cli.compose("bench", [f"+exp={exp}", "+preset=quick"])
    assert job.name == exp and job.bench.levers
    with pytest.raises(SpeedlabError, match="`bench` is a setting of bench, not of train"):
        cli.compose("train", [f"+exp={exp}"])


@pytest.mark.parametrize("exp", EXPERIMENTS)
def test_every_experiment_composes_with_and_without_the_quick_preset(exp):
    full = cli.compose("train", [f"+exp={exp}"])
    quick = cli.compose("train", [f"+exp={exp}", "+preset=quick"])
    assert isinstance(full, config.TrainJob) and quick.model.name == full.model.name
    assert full.name == quick.name == exp
    assert quick.data.name == "synthetic" and quick.data.resolution == 64
    # An experiment's own trainer settings (the small-network ones) win over the preset's one short epoch.
    assert quick.trainer.epochs == (full.trainer.epochs if exp in ("lenet5_mnist", "mlp_matexp") else 1)
    # the preset shrinks, it does not change what the experiment is about
    assert (quick.compile.enabled, quick.amp.enabled, quick.model.activation) == (
        full.compile.enabled,
        full.amp.enabled,
        full.model.activation,
    )


def test_defaults_match_the_reference_study():
    cfg = cli.compose("train")
    assert cfg.data.name == "tinyimagenet" and cfg.data.resolution == 224 and cfg.data.image_size == 64
    assert cfg.trainer.batch_size == 128 and cfg.model.activation == "gelu"
    assert cli.compose("bench").bench.batch_sizes == [1, 64]


def test_every_registered_activation_is_a_valid_choice():
    assert {str(a) for a in config.ActivationName} == set(activations.names())


@pytest.mark.parametrize("command", sorted(config.JOBS))
def test_every_command_composes_its_own_job(command):
    assert type(cli.compose(command)) is config.JOBS[command]


def test_a_command_job_holds_only_what_the_command_reads():
    sections = {name: {f.name for f in dataclasses.fields(job)} for name, job in config.JOBS.items()}
    training = {"trainer", "optim", "compile", "amp"}
    assert not training & sections["bench"] and not training & sections["export"]
    assert "bench" not in sections["export"] and "export" not in sections["train"]
    assert sections["data_prepare"] == {"name", "data", "monitor", "tracking"}


@pytest.mark.parametrize("family", ["convnext", "mlp", "lenet5"])
@pytest.mark.parametrize("command", ["train", "bench", "export", "profile", "parity", "data_prepare"])
def test_the_quick_preset_applies_to_every_command_and_family(command, family):
    overrides = ["+preset=quick"] if command == "data_prepare" else [f"model={family}", "+preset=quick"]
    cfg = cli.compose(command, overrides)
    assert cfg.data.name == "synthetic" and cfg.data.resolution == 64
    if hasattr(cfg, "trainer"):
        assert (cfg.trainer.epochs, cfg.trainer.batch_size) == (1, 64)
    if family == "convnext" and hasattr(cfg, "model"):
        assert cfg.model.dims == [32, 64, 128, 256]


@pytest.mark.parametrize(
    ("command", "override", "fix"),
    [
        ("export", "checkpoint=run", "use weights"),
        ("bench", "checkpoint=run", "use weights"),
        ("train", "trainer.checkpoint=false", "use trainer.save_checkpoints"),
        ("train", "compile.optimizer=true", "use trainer.step=compiled_optimizer"),
        ("train", "trainer.cuda_graphs=true", "use trainer.step=graphed"),
        ("export", "export.parity.fp32.min_cosine=0.9", "use export.limits"),
        ("export", "bench.batch_sizes=[1,8]", "export.tensorrt_batch_range"),
        ("train", "model.name=mlp", "set by the choice model=NAME"),
        ("train", "data.pipeline=classic", "use data.feed (device, or loader"),
        ("train", "data.resident=false", "use data.feed (device for resident=true, loader for resident=false)"),
    ],
)
def test_an_old_key_is_refused_naming_the_new_one(command, override, fix):
    with pytest.raises(SpeedlabError, match=re.escape(fix)):
        cli.compose(command, [override])


@pytest.mark.parametrize(
    ("command", "override", "message"),
    [
        ("train", "trainer.batch_size=0", "trainer.batch_size=0: must be at least 1"),
        ("train", "optim.lr=-1", "optim.lr=-1.0: must be a positive number"),
        ("train", "trainer.threads=0", "trainer.threads=0: must be at least 1 (or null)"),
        ("bench", "bench.repeats=0", "bench.repeats=0: must be at least 1"),
        ("bench", "bench.precisions=[fp8]", "valid precisions: fp32, bf16, fp16, int8"),
        ("bench", "bench.cell_timeout_s=0", "give seconds above 0"),
        ("export", "export.opset=30", "the dynamo exporter writes opsets 18-23"),
        ("export", "export.tensorrt_batch_range=[8,1]", "1 <= min <= max"),
        ("profile", "profile.steps=0", "profile.steps=0: must be at least 1"),
        ("parity", "parity.steps=0", "parity.steps=0: must be at least 1"),
        ("train", "monitor.interval_s=0", "must be above 0 seconds"),
    ],
)
def test_a_value_out_of_range_is_refused_at_composition(command, override, message):
    with pytest.raises(SpeedlabError, match=re.escape(message)):
        cli.compose(command, [override])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "trainer.step=fusion",
            "trainer.step: unknown fusion; valid: compiled_optimizer, functional, fused, graphed, module",
        ),
        ("bench.backends=[eager,onnx]", "bench.backends: unknown onnx; valid: aotinductor, eager"),
        ("export.formats=[onnx,openvino]", "export.formats: unknown openvino; valid: aotinductor, aotinductor_cuda"),
    ],
)
def test_an_unknown_plugin_is_refused_naming_the_registered_ones(override, message):
    command = override.split(".")[0].replace("trainer", "train")
    with pytest.raises(SpeedlabError, match=re.escape(message)):
        cli.compose(command, [override])


def test_each_backend_brings_its_options_as_its_own_section():
    from speedlab.bench import backends

    bench = cli.compose("bench", ["bench.onnxruntime.spinning=true"]).bench
    assert set(backends.options()) == {"aotinductor", "inductor", "onnxruntime", "openvino"}
    for name, schema in backends.options().items():
        assert isinstance(getattr(bench, name), schema) and schema.__module__ == f"speedlab.bench.backends.{name}"
    assert bench.onnxruntime.spinning is True


def test_a_section_of_another_command_names_its_owners():
    with pytest.raises(SpeedlabError, match=r"`compile` is a setting of train, profile, parity, not of bench"):
        cli.compose("bench", ["+exp=tc_amp"])


def test_data_root_defaults_to_env(monkeypatch):
    monkeypatch.setenv("SPEEDLAB_DATA", "/somewhere/else")
    assert cli.compose("train").data.root == "/somewhere/else"


def test_compose_error_names_key_and_choices():
    with pytest.raises(SpeedlabError, match=r"(?s)model\.activation.*expected one of \[.*relu"):
        cli.compose("train", ["model.activation=gleu"])


@pytest.mark.parametrize("group", config.PLUGIN_GROUPS)
def test_plugin_group_choices_are_the_registry(group):
    """conf/model/*.yaml and conf/data/*.yaml are exactly the registered families and sources, and each composes
    into its own schema."""
    registry = {"model": models, "data": sources}[group]
    assert sorted(p.stem for p in (config.CONF_DIR / group).glob("*.yaml")) == registry.names()
    for name in registry.names():
        cfg = cli.compose("train", [f"{group}={name}"])
        node = getattr(cfg, group)
        assert node.name == name and type(node).__name__ != "DictConfig", (group, name)


def test_unknown_family_or_source_names_the_valid_ones():
    with pytest.raises(SpeedlabError, match=r"(?s)model/resnet.*Available options in 'model'.*lenet5.*mlp.*timm"):
        cli.compose("train", ["model=resnet"])
    with pytest.raises(SpeedlabError, match=r"(?s)data/cifar.*Available options in 'data'.*digits.*matrix_exp.*mnist"):
        cli.compose("train", ["data=cifar"])


def test_a_key_of_another_family_is_refused_at_composition():
    with pytest.raises(SpeedlabError, match=r"(?s)model.depths.*not in 'MLPCfg'"):
        cli.compose("train", ["model=mlp", "model.depths=[1]"])


def test_a_config_naming_another_family_cannot_swap_it_behind_the_groups_back():
    from speedlab.data.spec import DataSpec

    cfg = cli.compose("train")
    cfg.model.name = "mlp"  # e.g. a YAML file setting model.name: the registry still refuses it
    with pytest.raises(
        SpeedlabError, match="model.name=mlp does not match.*choose a model family with the group, e.g. model=mlp"
    ):
        models.check(cfg.model, DataSpec("classification", (3, 32, 32), 10))


def test_every_plugin_kind_uses_the_one_registry_implementation():
    from activations.registry import Registry
    from speedlab.bench import backends
    from speedlab.export import formats
    from speedlab.train import steps

    kinds = {"activations": activations, "models": models, "sources": sources, "steps": steps,
             "backends": backends, "formats": formats}  # fmt: skip
    for kind, package in kinds.items():
        assert isinstance(package._REGISTRY, Registry), kind
        assert package._REGISTRY.names() == sorted(package._REGISTRY.names()) and package._REGISTRY.names(), kind


@pytest.mark.parametrize("command", sorted(config.JOBS))
def test_every_source_and_family_composes_for_every_command(command):
    """A plug-in's config sets only its own section (data=digits once set trainer.batch_size for every command, which
    bench and export refuse): its training defaults are a part the commands that train select."""
    for name in sources.names():
        assert cli.compose(command, [f"data={name}"]).data.name == name
    if command != "data_prepare":
        for name in models.names():
            assert cli.compose(command, [f"model={name}"]).model.name == name


def test_a_preset_wins_over_a_sources_defaults_and_the_command_line_over_both():
    assert cli.compose("train", ["data=digits"]).trainer.batch_size == 32  # the source's training default
    assert cli.compose("parity", ["data=digits", "+preset=quick"]).trainer.batch_size == 64  # the preset's
    assert cli.compose("train", ["data=digits", "+preset=quick", "trainer.batch_size=8"]).trainer.batch_size == 8
