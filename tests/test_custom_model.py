"""`model=custom`: the user's own nn.Module by import path (tests/user_models/, code speedlab has never seen), through
train, export and bench, rebuilt from its checkpoint alone; and every kind of bad target as one clear error."""

from __future__ import annotations

import json

import pytest
from torch import nn

from speedlab import cli, models
from speedlab.data.build import describe
from tests.conftest import TINY_DATA, invoke, tiny_family


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.target=tests.user_models.nets.TinyCNN", "model.kwargs={classes: 10, width: 4}"],
        ["model.target=tests.user_models.nets:tiny_cnn", "model.kwargs.classes=10", "model.kwargs.width=4"],
    ],
    ids=["class, kwargs as a dict", "factory with a colon, kwargs one by one"],
)
def test_a_class_or_factory_builds_with_its_kwargs(overrides):
    cfg = cli.compose("train", [*TINY_DATA, "model=custom", *overrides])
    model = models.build(cfg.model, describe(cfg.data))
    assert isinstance(model, nn.Module) and model.head.out_features == 10 and model.features[0].out_channels == 4
    assert models.label(cfg.model) in ("custom TinyCNN", "custom tiny_cnn")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["model.target=tests.user_models.missing.Net"],
            "cannot import 'tests.user_models.missing': ModuleNotFoundError",
        ),
        (["model.target=tests.user_models.nets.Nope"], "module 'tests.user_models.nets' has no 'Nope'; it has: "),
        (["model.target=tests.user_models.nets.NOT_A_MODEL"], "is a int, not an nn.Module class or a factory"),
        (["model.target=tests.user_models.nets.not_a_module"], "returned a str, not an nn.Module"),
        (
            ["model.target=tests.user_models.nets.TinyCNN", "model.kwargs.depth=3"],
            "unexpected keyword argument 'depth'",
        ),
        ([], "model=custom needs model.target=PKG.MODULE.ATTR"),
    ],
    ids=["no module", "no attribute", "not callable", "not a module", "kwargs rejected", "no target"],
)
def test_a_bad_target_is_one_clear_error_before_any_work(run_main, overrides, message):
    out = run_main("train", *TINY_DATA, "model=custom", *overrides)
    assert out.returncode == 1 and message in out.stderr, out.stderr
    assert out.stderr.count("speedlab: error") == 1 and "Traceback" not in out.stderr


def test_trains_exports_and_benches_and_its_checkpoint_alone_rebuilds_it(tmp_path):
    tiny = tiny_family("custom")
    assert invoke("train", [*tiny, "trainer.max_steps=3", f"hydra.run.dir={tmp_path / 'train'}"]) == 0
    trained = json.loads((tmp_path / "train" / "result.json").read_text())
    assert trained["family"] == "custom" and trained["config"]["model"]["kwargs"] == {"classes": 10, "width": 8}
    # Given the trained run, export and bench rebuild the user's model from the checkpoint: no model.* overrides.
    weights = f"weights={tmp_path / 'train'}"
    assert invoke("export", [*TINY_DATA, weights, "export.formats=[onnx]", "export.parity_batch_size=16",
                             f"hydra.run.dir={tmp_path / 'export'}"]) == 0  # fmt: skip
    (onnx,) = json.loads((tmp_path / "export" / "result.json").read_text())["artifacts"]
    assert onnx["status"] == "ok" and onnx["top1_agreement"] == 1.0
    fast = ["bench.min_iters=3", "bench.min_time_s=0.05", "bench.warmup_iters=1", "bench.warmup_min_s=0.0"]
    assert invoke("bench", [*TINY_DATA, weights, "bench.backends=[eager,onnxruntime]", "bench.batch_sizes=[1,8]",
                            *fast, f"hydra.run.dir={tmp_path / 'bench'}"]) == 0  # fmt: skip
    benched = json.loads((tmp_path / "bench" / "result.json").read_text())
    assert benched["family"] == "custom" and {r["status"] for r in benched["rows"]} == {"ok"}
    assert {(r["backend"], r["batch_size"]) for r in benched["rows"]} == {
        (b, n) for b in ("eager", "onnxruntime") for n in (1, 8)}  # fmt: skip
