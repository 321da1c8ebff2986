"""The model families: every registered family builds for the data it declares it takes; ConvNeXt sizes, activation
swaps over the whole registry, init gains, the timm and torchvision adapters, the MLP and LeNet5, and bad input."""

from __future__ import annotations

import math
import re

import pytest
import torch

import activations
from speedlab import checkpoint, cli, config, models
from speedlab.data.spec import DataSpec
from speedlab.errors import SpeedlabError
from speedlab.models.convnext import Block, ConvNeXtCfg
from speedlab.models.init import activation_gain
from speedlab.models.lenet5 import LeNet5Cfg
from speedlab.models.mlp import MLPCfg
from speedlab.models.timm import TimmCfg
from speedlab.models.torchvision import TorchvisionCfg
from tests.conftest import TINY_FAMILY

TINY = {"depths": [1, 1, 1, 1], "dims": [8, 16, 32, 64], "drop_path": 0.0}
IMAGES = DataSpec("classification", (3, 32, 32), 5)


def tiny_cfg(family: str) -> config.ModelCfg:
    return cli.compose("train", [f"model={family}", *TINY_FAMILY.get(family, [])]).model


@pytest.mark.parametrize("family", models.names())
def test_every_family_builds_for_the_declared_shape_and_learns(family):
    """Each family takes 3x32x32 images with 5 classes, gives (batch, 5) and gets gradients everywhere."""
    torch.manual_seed(0)
    cfg = tiny_cfg(family)
    if family == "custom":  # the user's model takes its sizes from model.kwargs, not from the data
        cfg.kwargs["classes"] = IMAGES.num_outputs
    model = models.build(cfg, IMAGES)
    out = model(torch.randn(2, 3, 32, 32))
    out.sum().backward()
    assert out.shape == (2, 5)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


def test_default_convnext_is_about_the_reference_size():
    params = models.count_params(models.build(ConvNeXtCfg(), DataSpec("classification", (3, 224, 224), 200)))
    assert 17_000_000 < params < 19_000_000  # the reference study: 18M parameters for 200 classes


def test_quick_preset_model_is_about_one_million_parameters():
    from speedlab.data.build import describe

    cfg = cli.compose("train", ["+preset=quick"])
    assert 0.8e6 < models.count_params(models.build(cfg.model, describe(cfg.data))) < 1.5e6


@pytest.mark.parametrize("name", activations.names())
def test_every_registered_activation_swaps_into_the_convnext(name):
    model = models.build(ConvNeXtCfg(activation=name, **TINY), IMAGES)
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
        return models.build(ConvNeXtCfg(init=init, **TINY), IMAGES).head.weight.detach().clone()

    assert torch.equal(weights("kaiming"), weights("kaiming"))
    assert weights("trunc_normal").std() < 0.03 < weights("kaiming").std()
    assert not torch.equal(weights("torch_default"), weights("kaiming"))


def test_families_take_the_datas_channels():
    grey = DataSpec("classification", (1, 32, 32), 7)
    for cfg in (ConvNeXtCfg(**TINY), TimmCfg(timm_name="test_resnet"), LeNet5Cfg(), MLPCfg()):
        assert models.build(cfg, grey)(torch.randn(2, 1, 32, 32)).shape == (2, 7), cfg.name


def test_timm_model_gets_the_run_classes_without_download():
    model = models.build(TimmCfg(timm_name="resnet18"), DataSpec("classification", (3, 32, 32), 7))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_unknown_timm_model_lists_close_matches():
    with pytest.raises(SpeedlabError, match=r"model.timm_name='convnext_tinny'.*close matches: .*convnext_tiny"):
        models.build(TimmCfg(timm_name="convnext_tinny"), IMAGES)


def test_torchvision_efficientnet_b0_has_its_published_size():
    """1,000 ImageNet classes at 224 px: 5.29M parameters, as torchvision's model card says."""
    model = models.build(
        TorchvisionCfg(torchvision_name="efficientnet_b0"), DataSpec("classification", (3, 224, 224), 1000)
    )
    assert models.count_params(model) == 5_288_548


def test_torchvision_refuses_unknown_names_and_grey_images():
    with pytest.raises(SpeedlabError, match=r"'efficientnet_b9'.*close matches: .*efficientnet_b7"):
        models.check(TorchvisionCfg(torchvision_name="efficientnet_b9"), IMAGES)
    with pytest.raises(SpeedlabError, match="model=torchvision takes 3-channel images; this data gives 1"):
        models.check(TorchvisionCfg(), DataSpec("classification", (1, 32, 32), 10))


def test_mlp_is_the_references_4_32_16_4_network():
    model = models.build(MLPCfg(), DataSpec("regression", (4,), 4))
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(4, 32), (32, 16), (16, 4)]
    assert sum(isinstance(m, torch.nn.Tanh) for m in model.modules()) == 2
    assert models.count_params(model) == 756


def test_lenet5_is_the_classic_on_mnist():
    model = models.build(LeNet5Cfg(), DataSpec("classification", (1, 28, 28), 10))
    assert models.count_params(model) == 44_426  # 16 x 4 x 4 features into 120, 84, 10
    padded = models.build(LeNet5Cfg(padding=2), DataSpec("classification", (1, 28, 28), 10))
    assert padded.classifier[1].in_features == 16 * 5 * 5  # the paper's 32 x 32 geometry
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)


@pytest.mark.parametrize("padding", [0, 2])
def test_lenet5_unfold_convolutions_match_torchs_forward_and_gradients(padding):
    """model.conv=unfold (im2col + one matmul): the same parameters and state-dict keys as nn.Conv2d, and in fp32
    the same outputs (1e-5) and gradients (1e-4 relative: the weight gradient sums in another order)."""
    spec = DataSpec("classification", (1, 28, 28), 10)
    torch.manual_seed(0)
    native = models.build(LeNet5Cfg(padding=padding), spec)
    unfold = models.build(LeNet5Cfg(padding=padding, conv="unfold"), spec)
    unfold.load_state_dict(native.state_dict())  # same keys, same shapes
    x = torch.randn(5, 1, 28, 28)
    a, b = native(x), unfold(x)
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    a.square().sum().backward()
    b.square().sum().backward()
    for p, q in zip(native.parameters(), unfold.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-4 * p.grad.abs().max().item())
    assert models.label(LeNet5Cfg(conv="unfold")) == "unfold convs" and models.label(LeNet5Cfg()) is None


@pytest.mark.parametrize(
    ("cfg", "spec", "message"),
    [
        (LeNet5Cfg(), DataSpec("classification", (1, 8, 8), 10), "model=lenet5 needs images of at least 16x16 px"),
        (ConvNeXtCfg(), DataSpec("classification", (3, 28, 28), 10), "model=convnext needs images of at least 32x32"),
        (ConvNeXtCfg(), DataSpec("regression", (4,), 4), "model=convnext needs image input"),
    ],
)
def test_a_family_refuses_data_it_cannot_take_saying_what_to_change(cfg, spec, message):
    with pytest.raises(SpeedlabError, match=re.escape(message)):
        models.build(cfg, spec)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model=mlp model.widths=[8,0]", "model.widths=[8, 0]: every hidden width must be >= 1"),
        ("model=lenet5 model.padding=-1", "model.padding=-1: must be at least 0"),
        ("model.depths=[1,1] model.dims=[8]", "need equally many stages, all numbers >= 1"),
    ],
)
def test_a_family_setting_out_of_range_is_refused_at_composition(override, message):
    with pytest.raises(SpeedlabError, match=re.escape(message)):
        cli.compose("train", override.split())


def test_weights_of_another_model_are_refused_naming_the_keys(tmp_path):
    lenet = models.build(LeNet5Cfg(), DataSpec("classification", (1, 28, 28), 10))
    mlp = models.build(MLPCfg(), DataSpec("classification", (1, 28, 28), 10))
    expected = r"(?s)do not fit the model.*missing from the checkpoint: classifier.1.bias.*not in the model: 1.bias"
    with pytest.raises(SpeedlabError, match=expected):
        checkpoint.load_weights(lenet, mlp.state_dict(), tmp_path / "checkpoint.pt")


# The fast depthwise convolution against its reference twin, nn.Conv2d with the same weights. fp32: forward to
# 1e-5 and gradients to 1e-4 relative (the weight gradient sums the batch in another order). Under bf16 autocast the
# fast layer runs fp32, so it is held to the fp32 reference, and the plain layer (bf16) is only as close as bf16 is.
DEPTHWISE_SHAPES = [(4, 8, 16, 16, "contiguous"), (3, 16, 9, 7, "channels_last"), (2, 32, 2, 2, "contiguous")]


# The weight gradient's math runs eager in the fast suite; compiled, as training runs it, in the slow one (each new
# shape compiles the reduction once: 5-30 s with a cold cache, too much for CI's 10 minutes).
@pytest.fixture(params=["eager reduction", pytest.param("compiled reduction", marks=pytest.mark.slow)])
def reduction(request, monkeypatch):
    from speedlab.models import depthwise

    if request.param == "eager reduction":
        monkeypatch.setattr(depthwise, "_compiled_weight_grad", lambda: depthwise.weight_grad)
    return request.param


def _depthwise_pair(channels: int, bias: bool = True):
    from speedlab.models.depthwise import DepthwiseConv2d

    torch.manual_seed(0)
    reference = torch.nn.Conv2d(channels, channels, 7, padding=3, groups=channels, bias=bias)
    fast = DepthwiseConv2d(channels, channels, 7, padding=3, groups=channels, bias=bias)
    fast.load_state_dict(reference.state_dict())  # the same parameters, the same state dict
    return reference, fast


def _grads(layer, x, upstream, autocast: bool = False):
    x = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = layer(x)
    out.float().backward(upstream)
    return out, x.grad, layer.weight.grad, None if layer.bias is None else layer.bias.grad


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()


@pytest.mark.parametrize(("n", "c", "h", "w", "layout"), DEPTHWISE_SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_fast_depthwise_matches_nn_conv2d_forward_and_gradients_in_fp32(n, c, h, w, layout, bias, reduction):
    reference, fast = _depthwise_pair(c, bias)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = torch.randn(n, c, h, w).contiguous(memory_format=fmt)
    upstream = torch.randn(n, c, h, w)
    for want, got in zip(_grads(reference, x, upstream), _grads(fast, x, upstream), strict=True):
        if want is None:
            assert got is None
            continue
        assert got.dtype == want.dtype and got.shape == want.shape
        assert _rel(got, want) < 1e-4


def test_fast_depthwise_stays_fp32_under_bf16_autocast_and_matches_the_fp32_reference(reduction):
    reference, fast = _depthwise_pair(8)
    x, upstream = torch.randn(4, 8, 16, 16), torch.randn(4, 8, 16, 16)
    want = _grads(reference, x, upstream)  # fp32, no autocast
    got = _grads(fast, x, upstream, autocast=True)
    assert got[0].dtype == torch.float32
    assert all(_rel(g, r) < 1e-4 for g, r in zip(got, want, strict=True))
    reference.zero_grad()
    plain_bf16 = _grads(reference, x, upstream, autocast=True)
    assert plain_bf16[0].dtype == torch.bfloat16 and _rel(plain_bf16[0], want[0]) < 3e-2  # bf16's own accuracy


@pytest.mark.slow  # compiles the layer's forward and backward: ~30 s with a cold cache
def test_fast_depthwise_compiled_matches_eager_and_falls_back_off_its_fast_path():
    from speedlab.models.depthwise import DepthwiseConv2d

    reference, fast = _depthwise_pair(8)
    x, upstream = torch.randn(4, 8, 16, 16), torch.randn(4, 8, 16, 16)
    want = _grads(reference, x, upstream)
    fast.zero_grad()
    got = _grads(torch.compile(fast, dynamic=False), x, upstream)
    assert all(_rel(g, r) < 1e-4 for g, r in zip(got, want, strict=True))
    strided = DepthwiseConv2d(8, 8, 7, stride=2, padding=3, groups=8)
    assert not strided.fast_path_applies() and strided(x).shape == (4, 8, 8, 8)


def test_convnext_fast_depthwise_shares_the_state_dict_and_labels_the_run():
    cfg = cli.compose("train", ["model.depthwise=fast", *[f"model.{k}={v}" for k, v in TINY.items()]])
    fast = models.build(cfg.model, IMAGES)
    plain = models.build(cli.compose("train", [f"model.{k}={v}" for k, v in TINY.items()]).model, IMAGES)
    assert fast.state_dict().keys() == plain.state_dict().keys()
    assert type(fast.stages[0][0].dwconv).__name__ == "DepthwiseConv2d"
    assert models.label(cfg.model) == "fast depthwise"
    with pytest.raises(SpeedlabError, match=r"(?s)model.depthwise=fastest.*expected one of \[torch, fast\]"):
        cli.compose("train", ["model.depthwise=fastest"])


def test_fast_depthwise_without_grad_is_the_plain_convolution_so_it_exports(tmp_path):
    import onnx

    reference, fast = _depthwise_pair(8)
    x = torch.randn(2, 8, 10, 10)
    with torch.no_grad():
        assert _rel(fast(x), reference(x)) < 1e-6
    path = tmp_path / "dw.onnx"
    torch.onnx.export(fast.eval(), (x,), str(path), dynamo=False)
    assert [n.op_type for n in onnx.load(str(path)).graph.node] == ["Conv"]
