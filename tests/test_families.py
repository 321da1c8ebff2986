"""Every model family through every command: it trains two steps, benches, exports ONNX with parity and profiles,
with input shapes from the data; checkpoints carry the family, its config and the data's shape to bench and
export; and no module outside the registries picks a family or a source by name."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from speedlab import models
from speedlab.bench import command as bench
from speedlab.data import sources
from speedlab.export import command as export
from speedlab.train import command as train
from tests.conftest import REPO, TINY_DATA, invoke, tiny_family

FAST_BENCH = ["bench.min_iters=3", "bench.min_time_s=0.02", "bench.warmup_iters=1", "bench.warmup_min_s=0.0"]


def run(command, run_dir: Path, *overrides: str) -> dict:
    name = {"speedlab.profiling": "profile"}.get(command.__name__, command.__name__.split(".")[1])
    invoke(name, [*overrides, f"hydra.run.dir={run_dir}"])
    return json.loads((run_dir / "result.json").read_text())


# timm's and torchvision's adapters cost ~9 s each here: the slow suite runs them, CI's 10 minutes are tight.
SLOW_FAMILIES = {"timm", "torchvision"}


@pytest.mark.parametrize(
    "family", [pytest.param(f, marks=pytest.mark.slow) if f in SLOW_FAMILIES else f for f in models.names()]
)
def test_every_family_trains_benches_exports_and_profiles(family, tmp_path):
    from speedlab import profiling

    tiny = tiny_family(family)
    trained = run(train, tmp_path / "train", *tiny, "trainer.max_steps=2")
    assert trained["status"] == "ok" and trained["family"] == family and trained["epochs"][0]["steps"] == 2
    state_dir = str(tmp_path / "train")

    exported = run(export, tmp_path / "export", *TINY_DATA, "export.formats=[onnx]", "export.parity_batch_size=16",
                   f"weights={state_dir}")  # fmt: skip
    (onnx,) = exported["artifacts"]
    assert exported["status"] == "ok" and onnx["status"] == "ok" and onnx["max_rel_error"] < 1e-4, onnx
    assert exported["trained"] and exported["family"] == family

    # bench runs the exported file (bench.export_dir) and the checkpoint's eager model
    benched = run(bench, tmp_path / "bench", *TINY_DATA, "bench.batch_sizes=[1,3]", *FAST_BENCH,
                  "bench.backends=[eager,onnxruntime]", f"weights={state_dir}",
                  f"bench.export_dir={tmp_path / 'export'}")  # fmt: skip
    assert benched["family"] == family and benched["input_shape"] == [None, 3, 32, 32]
    assert {r["status"] for r in benched["rows"]} == {"ok"}, benched["rows"]

    profiled = run(profiling, tmp_path / "profile", *tiny, "profile.steps=1", "profile.warmup=1")
    assert profiled["status"] == "ok" and profiled["input_shape"] == [None, 3, 32, 32]
    assert all(profiled["tables"][phase] for phase in ("forward", "backward", "inference"))


def test_the_mlp_on_regression_data_trains_benches_and_exports(tmp_path):
    data = ["model=mlp", "data=matrix_exp", "data.train_size=64", "data.val_size=32"]
    trained = run(train, tmp_path / "train", *data, "trainer.batch_size=16", "trainer.epochs=3", "trainer.eval_every=2")
    assert trained["task"] == "regression" and trained["metric"] == "val_mse" and trained["final_val_mse"] > 0
    evaluated = [e["epoch"] for e in trained["epochs"] if "val_mse" in e]
    assert evaluated == [2, 3]  # every 2nd epoch and the last
    benched = run(bench, tmp_path / "bench", *data, *FAST_BENCH, "bench.backends=[eager,inductor,onnxruntime]",
                  "bench.batch_sizes=[1,8]")  # fmt: skip
    assert benched["input_shape"] == [None, 4] and {r["status"] for r in benched["rows"]} == {"ok"}
    exported = run(export, tmp_path / "export", *data, "export.parity_batch_size=16", "export.formats=[onnx,int8]",
                   f"weights={tmp_path / 'train'}")  # fmt: skip
    fp32, int8 = exported["artifacts"][:2]
    assert fp32["status"] == "ok" and fp32["top1_agreement"] is None and fp32["val_mse"] > 0
    assert int8["status"] in ("ok", "failed") and int8["cosine"] is not None


def test_lenet5_on_mnist_files(tmp_path, fake_mnist):
    result = run(train, tmp_path / "run", "model=lenet5", "data=mnist", f"data.root={fake_mnist}", "trainer.epochs=2",
                 "trainer.batch_size=20")  # fmt: skip
    assert result["status"] == "ok" and result["data"]["spec"]["input_shape"] == [1, 28, 28]
    assert result["params"] == 44_426 and result["final_val_acc"] > 10  # above chance (10 %) in two short epochs


def test_bench_takes_the_family_and_shape_from_the_checkpoint(tmp_path):
    """A ReLU run benches as ReLU, and a 7-class run at 48 px loads, whatever the bench run's own config says."""
    run(train, tmp_path / "relu", *tiny_family("convnext"), "model.activation=relu", "data.num_classes=7",
        "data.resolution=48", "trainer.max_steps=1")  # fmt: skip
    result = run(bench, tmp_path / "bench", "+preset=quick", *FAST_BENCH, "bench.backends=[eager]",
                 "bench.batch_sizes=[2]", f"weights={tmp_path / 'relu'}")  # fmt: skip
    assert result["model_config"]["activation"] == "relu" and result["input_shape"] == [None, 3, 48, 48]
    assert result["data_spec"]["num_outputs"] == 7 and "model from the checkpoint" in result["notes"][0]


def test_a_checkpoint_of_another_family_is_refused(tmp_path, run_main):
    run(train, tmp_path / "mlp", *tiny_family("mlp"), "trainer.max_steps=1")
    out = run_main("train", *tiny_family("lenet5"), f"resume={tmp_path / 'mlp'}")
    assert out.returncode == 1 and "is from a different model" in out.stderr
    assert "model.name: checkpoint 'mlp', this run 'lenet5'" in out.stderr and "Traceback" not in out.stderr
    out = run_main("bench", *tiny_family("lenet5", "bench"), f"weights={tmp_path / 'mlp'}")
    assert out.returncode == 1 and "model.name: checkpoint 'mlp', this run 'lenet5'" in out.stderr
    assert "drop the model overrides" in out.stderr


def test_export_refuses_data_of_another_shape_than_the_checkpoints(tmp_path, run_main):
    run(train, tmp_path / "run", *tiny_family("mlp"), "trainer.max_steps=1")
    out = run_main("export", *TINY_DATA, "data.resolution=40", f"weights={tmp_path / 'run'}")
    assert out.returncode == 1 and "trained on other data" in out.stderr
    assert "data input_shape: checkpoint [3, 32, 32], this run's data [3, 40, 40]" in out.stderr


def test_torchvision_efficientnet_b0_benches_at_224_px_with_1000_classes(tmp_path):
    result = run(bench, tmp_path / "bench", "model=torchvision", "model.torchvision_name=efficientnet_b0",
                 "data=synthetic", "data.num_classes=1000", "data.resolution=224", "bench.backends=[eager]",
                 "bench.batch_sizes=[1]", *FAST_BENCH)  # fmt: skip
    assert result["params"] == 5_288_548 and result["input_shape"] == [None, 3, 224, 224]
    assert result["rows"][0]["status"] == "ok" and 0.7e9 < result["flops_per_image"] < 0.9e9  # 0.39 GMACs


def test_no_module_outside_the_registries_picks_a_family_or_source_by_name():
    """The acceptance grep: no `== "convnext"`-style test of a family or source name outside its own plug-in."""
    names = [*models.names(), *sources.names()]
    plugin_dirs = {REPO / "speedlab" / "models", REPO / "speedlab" / "data" / "sources"}
    alternatives = "|".join(map(re.escape, names))
    pattern = re.compile(rf"""(==|!=|\bin\b)\s*\(?["']({alternatives})["']""")
    offenders = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for path in (REPO / "speedlab").rglob("*.py")
        if path.parent not in plugin_dirs
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


@pytest.mark.slow
def test_lenet5_reaches_95_percent_on_digits_with_its_defaults(tmp_path):
    result = run(train, tmp_path / "run", "model=lenet5", "data=digits")
    assert result["final_val_acc"] >= 95.0, result["final_val_acc"]


@pytest.mark.slow
def test_the_reference_mlp_reaches_its_val_mse_in_10000_full_batch_epochs(tmp_path):
    """The reference's PyTorch script: 0.042 test MSE after 10,000 epochs; the issue's bar: 0.05."""
    result = run(train, tmp_path / "run", "+exp=mlp_matexp")
    assert len(result["epochs"]) == 10_000 and result["final_val_mse"] <= 0.05, result["final_val_mse"]
    assert sum("val_mse" in e for e in result["epochs"]) == 10  # evaluated every 1,000 epochs only
