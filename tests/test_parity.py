"""`speedlab parity`: two variants on identical batches are judged identical, equivalent or diverged as they should
be; copying weights and aligning the stochastic layers' random draws do what they say; bad pairs fail clearly."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from speedlab.parity import verdict
from speedlab.parity.argv import split_argv
from tests.conftest import TINY

# 4-16-4 MLP on 256 matrix exponentials, batches of 64: 4 steps an epoch, 3 epochs.
MLP = [
    "model=mlp", "data=matrix_exp", "model.widths=[16]", "data.train_size=256", "data.val_size=64",
    "trainer.batch_size=64", "trainer.epochs=3", "optim.schedule=constant",
]  # fmt: skip


def parity(run_main, tmp_path: Path, *args: str) -> dict:
    run_dir = tmp_path / "parity"
    shared = [a for a in args if not a.startswith("--")]
    outcome = run_main("parity", f"hydra.run.dir={run_dir}", *args)
    assert outcome.returncode == 0, outcome.stderr
    assert "verdict:" in outcome.stdout and "| Epoch | Loss A | Loss B | Difference |" in outcome.stdout
    result = json.loads((run_dir / "result.json").read_text())
    assert result["kind"] == "parity" and result["status"] == "ok", shared
    assert (run_dir / "parity.png").stat().st_size > 0
    return result


def test_a_variant_that_changes_nothing_is_identical(run_main, tmp_path):
    result = parity(run_main, tmp_path, *MLP)
    assert result["verdict"] == "identical"
    assert result["steps"] == 12 and len(result["epochs"]) == 3
    assert result["max_abs_difference"] == 0.0 and result["final_weights"]["relative"] == 0.0
    assert result["losses"]["a"] == result["losses"]["b"]


def test_eager_and_compiled_fp32_are_equivalent(run_main, tmp_path):
    result = parity(run_main, tmp_path, *MLP, "--a", "compile.enabled=false", "--b", "compile.enabled=true")
    assert result["verdict"] in ("equivalent", "identical")  # identical would be fine, equivalent is expected
    assert result["tolerance"] == verdict.TOLERANCES["fp32"]
    assert result["max_rel_difference"] <= 1e-4
    assert result["sides"]["b"]["changes"] == "TC"


def test_a_different_init_without_copied_weights_diverges_from_the_first_step(run_main, tmp_path):
    result = parity(
        run_main, tmp_path, *MLP, "parity.copy_weights=false", "--a", "model.init=torch_default",
        "--b", "model.init=kaiming",
    )  # fmt: skip
    assert result["verdict"] == "diverged" and result["first_step_over_tolerance"] == 1
    assert result["final_weights"]["relative"] > 0.1


def test_copied_weights_make_a_different_init_identical(run_main, tmp_path):
    result = parity(run_main, tmp_path, *MLP, "--a", "model.init=torch_default", "--b", "model.init=kaiming")
    assert result["verdict"] == "identical"


@pytest.mark.parametrize(("align", "expected"), [("true", {"identical"}), ("false", {"diverged", "equivalent"})])
def test_aligned_random_draws_make_drop_path_identical(run_main, tmp_path, align, expected):
    result = parity(
        run_main, tmp_path, *TINY, "model.drop_path=0.5", "trainer.max_steps=3", f"parity.align_rng={align}",
    )  # fmt: skip
    assert result["verdict"] in expected
    if align == "false":  # B's blocks dropped other samples than A's: the losses cannot all match
        assert result["max_abs_difference"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--a", "trainer.batch_size=32", "--b", "trainer.batch_size=64"], "trainer.batch_size: A 32, B 64"),
        (["--b", "data.train_size=128"], "parity needs identical batches"),
        (["--b", "model.widths=[8]"], "shapes differ: 1.bias (16,) vs (8,)"),
        (["--b", "model.widths=[16,8]"], "only in B"),
        (["parity.copy_weights=false", "--b", "model.widths=[8]"], None),  # allowed: nothing to copy
        (["--b", "parity.copy_weights=false"], "belong to the whole comparison"),
        (["--b", "trainer.step=graphed"], "side B (trainer.step=graphed)"),
        (["--b", "model.init=bogus"], "side B (model.init=bogus)"),
        (["parity.steps=0"], "parity.steps=0"),
        (["--a", "--cfg", "job"], "put Hydra flags before --a"),
    ],
)
def test_a_bad_pair_fails_with_one_clear_error(run_main, tmp_path, args, message):
    outcome = run_main("parity", *MLP, f"hydra.run.dir={tmp_path / 'run'}", *args)
    if message is None:
        assert outcome.returncode == 0, outcome.stderr
        return
    assert outcome.returncode != 0
    assert message in outcome.stderr and outcome.stderr.count("error") == 1, outcome.stderr
    assert "Traceback" not in outcome.stderr


def test_side_overrides_may_be_one_quoted_string():
    assert split_argv(["model=mlp", "--a", "a=1 b=2", "--b", "c=3"]) == (["model=mlp"], ["a=1", "b=2"], ["c=3"])


def test_verdicts_from_plain_numbers():
    same = {"comparable": True, "relative": 0.0, "bitwise_equal": True}
    moved = {"comparable": True, "relative": 1e-7, "bitwise_equal": False}
    assert verdict.judge([1.0, 0.5], [1.0, 0.5], same, 1e-4)["verdict"] == "identical"
    assert verdict.judge([1.0, 0.5], [1.0, 0.5], moved, 1e-4)["verdict"] == "equivalent"  # weights moved
    judged = verdict.judge([1.0, 0.5, 0.4], [1.0, 0.50001, 0.6], moved, 1e-4)
    assert judged["verdict"] == "diverged" and judged["first_step_over_tolerance"] == 3
    assert verdict.judge([1.0, math.nan], [1.0, 0.5], moved, 1e-4)["first_step_over_tolerance"] == 2
    # near-zero losses are judged against the floor, not against themselves
    assert verdict.relative_difference(1e-9, 2e-9) == pytest.approx(1e-9 / verdict.LOSS_FLOOR)
    assert verdict.tolerance_for(["fp32", "bf16"]) == verdict.TOLERANCES["bf16"]
    table = verdict.epoch_table([1.0, 3.0, 2.0], [1.0, 1.0, 2.0], steps_per_epoch=2)
    assert [r["difference"] for r in table] == [1.0, 0.0] and table[1]["steps"] == 1


def test_weights_of_different_shapes_are_not_comparable():
    a = {"w": torch.ones(2, 2)}
    assert verdict.weights_difference(a, {"w": torch.ones(3)})["comparable"] is False
    assert verdict.weights_difference(a, {"w": torch.ones(2, 2) * 1.5})["relative"] == pytest.approx(0.5)
