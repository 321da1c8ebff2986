"""The model builders: ConvNeXt sizes, activation swaps over the whole registry, init gains and the timm adapter."""

from __future__ import annotations

import math

import pytest
import torch

import activations
from speedlab.config import ModelCfg, compose
from speedlab.errors import SpeedlabError
from speedlab.models import build_model, count_params
from speedlab.models.convnext import Block
from speedlab.models.init import activation_gain

TINY = {"depths": [1, 1, 1, 1], "dims": [8, 16, 32, 64], "drop_path": 0.0}


def test_default_convnext_is_about_the_reference_size():
    params = count_params(build_model(ModelCfg(), num_classes=200))
    assert 17_000_000 < params < 19_000_000  # the reference study: 18M parameters for 200 classes


def test_quick_preset_model_is_about_one_million_parameters():
    cfg = compose("train", ["+preset=quick"])
    assert 0.8e6 < count_params(build_model(cfg.model, num_classes=cfg.data.num_classes)) < 1.5e6


@pytest.mark.parametrize("name", activations.names())
def test_every_registered_activation_swaps_into_the_convnext(name):
    model = build_model(ModelCfg(activation=name, **TINY), num_classes=5)
    assert all(type(b.act) is type(activations.create(name)) for b in model.modules() if isinstance(b, Block))
    out = model(torch.randn(2, 3, 32, 32))
    out.sum().backward()
    assert out.shape == (2, 5)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_relu_gain_is_torchs_sqrt_two():
    assert activation_gain("relu") == pytest.approx(math.sqrt(2), rel=1e-5)


@pytest.mark.parametrize("name", activations.names())
def test_kaiming_keeps_the_second_moment_through_a_layer(name):
    """With the activation's own gain, Linear(act(z)) has roughly unit variance for unit-variance z."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(1024, 1024)
    gain = activation_gain(name)
    torch.nn.init.normal_(layer.weight, std=gain / math.sqrt(1024))
    torch.nn.init.zeros_(layer.bias)
    with torch.no_grad():
        out = layer(activations.create(name)(torch.randn(512, 1024)))
    assert out.pow(2).mean().item() == pytest.approx(1.0, rel=0.1)


def test_init_schemes_differ_and_are_seeded():
    def weights(init: str) -> torch.Tensor:
        torch.manual_seed(0)
        return build_model(ModelCfg(init=init, **TINY), num_classes=5).head.weight.detach().clone()

    assert torch.equal(weights("kaiming"), weights("kaiming"))
    assert weights("trunc_normal").std() < 0.03 < weights("kaiming").std()
    assert not torch.equal(weights("torch_default"), weights("kaiming"))


def test_timm_model_gets_the_run_classes_without_download():
    model = build_model(ModelCfg(name="timm", timm_name="resnet18"), num_classes=7)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_unknown_timm_model_lists_close_matches():
    with pytest.raises(SpeedlabError, match=r"model.timm_name='convnext_tinny'.*close matches: .*convnext_tiny"):
        build_model(ModelCfg(name="timm", timm_name="convnext_tinny"), num_classes=7)


def test_timm_refuses_a_convnext_only_activation():
    with pytest.raises(SpeedlabError, match="model.activation=relu applies to model.name=convnext only"):
        build_model(ModelCfg(name="timm", timm_name="resnet18", activation="relu"), num_classes=7)
