"""The small-network overhead levers: each trains like Vanilla (fp32 levers: the same losses within a stated
tolerance), a checkpoint moves between the module and the functional step, FastTanh matches torch.tanh, and a lever
this machine or this combination cannot run gives one clear error before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import activations
from activations.fasttanh import tanh_rational
from speedlab import cli
from speedlab.data.build import build_data
from speedlab.train.builder import build_trainer
from speedlab.train.levers import cores
from speedlab.train.steps.functional import FlatAdamW
from tests.conftest import invoke

# A tiny regression run: 4-16-4 MLP on 256 matrix exponentials, full batch, 30 one-step epochs.
SMALL = [
    "+exp=mlp_matexp", "model.widths=[16]", "data.train_size=256", "data.val_size=64", "trainer.batch_size=256",
    "trainer.epochs=30", "trainer.eval_every=10", "trainer.timing_warmup=2",
]  # fmt: skip
# fp32 levers change the order of floating-point operations only: losses agree to ~1e-6 relative after 30 steps;
# the tolerance leaves room for compiled kernels' different reductions (and FastTanh's ~1e-7 forward error).
RTOL = 1e-4

FP32_LEVERS = {
    "1 thread": ["trainer.threads=1"],
    "foreach": ["optim.foreach=true"],
    "fused": ["optim.fused=true"],
    "DataLoader feed": ["data.feed=loader"],
    "reused memory": ["trainer.reuse_memory=true"],
    "functional": ["trainer.step=functional"],
    "functional compiled": ["trainer.step=functional", "compile.enabled=true"],
    "compiled optimizer": ["compile.enabled=true", "trainer.step=compiled_optimizer"],
    "fasttanh compiled": ["model.activation=fasttanh", "compile.enabled=true"],
    "oneDNN off": ["trainer.onednn=false"],
    "fused step": ["trainer.step=fused"],
}


def train(run_dir: Path, *overrides: str) -> dict:
    invoke("train", [*SMALL, *overrides, f"hydra.run.dir={run_dir}"])
    return json.loads((run_dir / "result.json").read_text())


@pytest.fixture(scope="module")
def vanilla(tmp_path_factory) -> dict:
    return train(tmp_path_factory.mktemp("vanilla") / "run")


def _losses(result: dict) -> list[float]:
    return [e["train_loss"] for e in result["epochs"]]


@pytest.mark.parametrize("lever", FP32_LEVERS)
def test_every_fp32_lever_trains_like_vanilla(lever, vanilla, tmp_path):
    result = train(tmp_path / "run", *FP32_LEVERS[lever])
    assert result["status"] == "ok" and result["changes"] != "Vanilla"
    assert _losses(result) == pytest.approx(_losses(vanilla), rel=RTOL)
    assert result["final_val_mse"] == pytest.approx(vanilla["final_val_mse"], rel=RTOL)
    assert _losses(result)[-1] < _losses(result)[0]  # and it trains


def test_bf16_trains_and_is_labelled_apart(vanilla, tmp_path):
    result = train(tmp_path / "run", "amp.enabled=true", "trainer.step=functional")
    assert "AMP (bf16)" in result["changes"] and _losses(result)[-1] < _losses(result)[0]
    assert result["final_val_mse"] == pytest.approx(vanilla["final_val_mse"], rel=0.05)


def test_a_long_run_of_tiny_epochs_records_its_time_in_steps(vanilla):
    assert {"loop_wall_s", "train_fraction", "bookkeeping_fraction"} <= set(vanilla)
    assert 0 < vanilla["train_fraction"] <= 1
    evaluated = [e["epoch"] for e in vanilla["epochs"] if "val_mse" in e]
    assert evaluated == [10, 20, 30] and all(isinstance(e["train_loss"], float) for e in vanilla["epochs"])


def _trainer(*overrides: str):
    cfg = cli.compose("train", [*SMALL, *overrides])
    data = build_data(cfg.data, seed=0, batch_size=cfg.trainer.batch_size, device=torch.device("cpu"))
    return build_trainer(cfg, data.spec, torch.device("cpu"), data=data), data


def test_functional_and_module_steps_agree_step_by_step_and_share_checkpoints():
    module_trainer, data = _trainer()
    functional_trainer, _ = _trainer("trainer.step=functional")
    x, y = next(iter(data.train.epoch(1)))
    for _ in range(5):
        a, b = module_trainer.step(x, y, 1e-3), functional_trainer.step(x, y, 1e-3)
        assert float(b) == pytest.approx(float(a), rel=1e-5)
    for p, q in zip(module_trainer.module.parameters(), functional_trainer.module.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)
    # The functional optimizer's state is AdamW's: either step resumes from the other's.
    state = functional_trainer.optimizer.state_dict()
    reference = module_trainer.optimizer.state_dict()
    assert [g["params"] for g in state["param_groups"]] == [g["params"] for g in reference["param_groups"]]
    for i, s in reference["state"].items():
        torch.testing.assert_close(state["state"][i]["exp_avg_sq"], s["exp_avg_sq"], rtol=1e-4, atol=1e-9)
        assert float(state["state"][i]["step"]) == float(s["step"]) == 5
    module_trainer.optimizer.load_state_dict(state)
    fresh, _ = _trainer("trainer.step=functional")
    fresh.optimizer.load_state_dict(reference)
    assert float(fresh.optimizer.step_count) == 5


def test_flat_adamw_shares_storage_with_the_module():
    trainer, _ = _trainer("trainer.step=functional")
    opt: FlatAdamW = trainer.optimizer
    first = next(trainer.module.parameters())
    with torch.no_grad():
        opt.params.zero_()
    assert float(first.detach().abs().sum()) == 0  # the module's weights are views of the flat buffer


def test_fasttanh_formula_matches_torch_tanh_over_all_of_fp32():
    x = torch.cat([
        torch.linspace(-20, 20, 400_001), torch.tensor([0.0, -0.0, 1e-30, -1e-8, 1e-4, 3e38, -3e38]),
        torch.logspace(-30, 1, 10_001), -torch.logspace(-30, 1, 10_001),
    ])  # fmt: skip
    exact = torch.tanh(x.double())
    got = tanh_rational(x).double()
    assert (got - exact).abs().max() < 4e-7  # absolute
    nonzero = x != 0
    assert ((got - exact).abs() / exact.abs())[nonzero].max() < 4e-7  # and relative, down to 1e-30
    assert torch.equal(torch.signbit(got), torch.signbit(exact)) and got.abs().max() <= 1


def test_fasttanh_compiled_forward_and_gradient_match_torch_tanh():
    act = activations.create("fasttanh")
    x = torch.randn(64, 33, dtype=torch.float32) * 3
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    grad = torch.randn_like(x)
    ya, yb = torch.compile(act)(xa), torch.tanh(xb)
    torch.testing.assert_close(ya, yb, rtol=0, atol=4e-7)
    ya.backward(grad)
    yb.backward(grad)
    # The gradient grad * (1 - y^2) inherits y's error: |2 y dy grad| <= 8e-7 |grad|.
    assert ((xa.grad - xb.grad).abs() <= 8e-7 * grad.abs() + 1e-12).all()
    assert torch.equal(act(x), torch.tanh(x))  # eager: torch.tanh itself
    xd = x.double().requires_grad_()
    torch.testing.assert_close(torch.compile(act)(xd), torch.tanh(xd), rtol=1e-15, atol=0)  # float64: torch.tanh


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trainer.threads=0"], "trainer.threads=0: must be at least 1"),
        ([f"trainer.threads={cores() + 1}"], f"lets the run use {cores()} cores"),
        (["trainer.step=graphed"], "trainer.step=graphed needs a CUDA GPU"),
        (["trainer.cuda_graphs=true"], "use trainer.step=graphed"),
        (["trainer.step=functional", "optim.fused=true"], "drop optim.fused"),
        (["trainer.step=graphed", "optim.foreach=true"], "drop optim.foreach"),
        (["trainer.step=functional", "amp.enabled=true", "amp.dtype=fp16"], "use amp.dtype=bf16"),
        (["compile.optimizer=true"], "use trainer.step=compiled_optimizer"),
        (["trainer.step=compiled_optimizer", "optim.foreach=true"], "drop optim.foreach"),
        (["trainer.step=eager"], "trainer.step: unknown eager; valid: compiled_optimizer, functional, fused, graphed"),
    ],
)
def test_a_lever_that_cannot_run_gives_one_clear_error(overrides, message, run_main):
    outcome = run_main("train", *SMALL, *overrides)
    assert outcome.returncode != 0
    assert message in outcome.stderr and outcome.stderr.count("error") == 1, outcome.stderr
    assert "Traceback" not in outcome.stderr


def test_lenet5_mnist_experiment_trains_with_the_functional_step(tmp_path, fake_mnist, run_main):
    outcome = run_main(
        "train", "+exp=lenet5_mnist", f"data.root={fake_mnist}", "trainer.epochs=1", "trainer.step=functional",
        "trainer.save_checkpoints=false", f"hydra.run.dir={tmp_path / 'run'}",
    )  # fmt: skip
    assert outcome.returncode == 0, outcome.stderr
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["changes"].startswith("functional step") and result["epochs"][0]["steps"] == 200 // 32


@pytest.mark.slow
def test_the_best_levers_keep_lenet5_accuracy_on_real_handwriting(tmp_path):
    """MNIST-shaped synthetic data is too easy to show a broken lever (100 % for every row of bench-small);
    sklearn's real digits are not: the functional compiled step must reach the module step's 95 %."""
    invoke("train", ["model=lenet5", "data=digits", "trainer.step=functional", "compile.enabled=true",
                    "trainer.reuse_memory=true", f"hydra.run.dir={tmp_path / 'run'}"])  # fmt: skip
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["final_val_acc"] >= 95.0, result["final_val_acc"]


@pytest.mark.slow
def test_the_best_levers_reach_the_reference_mlp_val_mse(tmp_path):
    """The full 10,000-epoch mlp_matexp with the best levers: the same bar as the module step (0.05), and the
    loop's time in steps recorded."""
    invoke("train", ["+exp=mlp_matexp", "trainer.step=functional", "compile.enabled=true", "model.activation=fasttanh",
                    "trainer.reuse_memory=true", f"hydra.run.dir={tmp_path / 'run'}"])  # fmt: skip
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["final_val_mse"] <= 0.05 and 0.5 < result["train_fraction"] <= 1


@pytest.mark.parametrize("step", ["module", "compiled_optimizer", "functional"])
def test_profile_times_every_step_variant_by_its_phases(step, run_main, tmp_path):
    """profile runs each step variant this machine can run (graphed needs a GPU: tests/test_gpu.py) and times the
    phases the variant lists: the module steps' forward, backward and optimizer; the functional step as one."""
    outcome = run_main("profile", *SMALL, f"trainer.step={step}", "profile.steps=1", "profile.warmup=1",
                       f"hydra.run.dir={tmp_path}")  # fmt: skip
    assert outcome.returncode == 0, outcome.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    phases = ["step"] if step == "functional" else ["forward", "backward", "optimizer"]
    assert result["phases"] == phases and set(result["tables"]) == {*phases, "inference"}
    assert set(result["split"]["parts_us"]) == {*phases, "other"} and result["split"]["step_us"] > 0
