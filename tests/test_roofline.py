"""The roofline's FLOP counts: a convolution's backward costs twice its forward (input and weight gradients), also
for grouped and depthwise convolutions, where torch 2.15's own formula overcounts by the channel count."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from speedlab import roofline


@pytest.mark.parametrize("groups", [1, 4, 32], ids=["dense", "grouped", "depthwise"])
def test_a_convolution_backward_costs_twice_its_forward(groups):
    conv = nn.Conv2d(32, 32, 7, padding=3, groups=groups)
    x = torch.randn(2, 32, 16, 16, requires_grad=True)
    forward = roofline.count_flops(lambda: conv(x))
    assert forward == 2 * 2 * 16 * 16 * 32 * (32 // groups) * 49  # 2 FLOPs per multiply-add
    assert roofline.count_flops(lambda: conv(x).sum().backward()) == 3 * forward


def test_only_the_weight_gradient_when_the_input_needs_none():
    conv = nn.Conv2d(8, 8, 3, groups=8)
    x = torch.randn(1, 8, 10, 10)  # no gradient for the input: the backward computes the weight's alone
    forward = roofline.count_flops(lambda: conv(x))
    assert roofline.count_flops(lambda: conv(x).sum().backward()) == 2 * forward


@pytest.mark.slow  # a fresh process measuring the yardstick twice: ~10 s
def test_the_inference_bound_times_every_gemm_and_convolution_of_a_forward(tmp_path):
    """scripts/inference_bound.py on a tiny ConvNeXt: 4 blocks give 9 GEMMs (two per block and the head), 4 depthwise
    and 4 patchify convolutions; their FLOPs add up to the forward's, and the bound is a fraction below 1."""
    import csv
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import REPO, TINY

    out = subprocess.run(
        [sys.executable, "scripts/inference_bound.py", "--batches", "2", "--study", "smoke", "--results-dir",
         str(tmp_path), "--", *TINY],
        cwd=REPO, env={**os.environ, "SPEEDLAB_ARTIFACTS": str(tmp_path)}, capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    rows = list(csv.reader((tmp_path / "smoke.csv").open()))  # the study's table: a row per op kind, then the bound
    assert {r[1] for r in rows[1:-1]} == {"GEMMs", "dense convolutions", "depthwise convolutions"}
    assert rows[-1][1].startswith("**bound") and 0 < float(rows[-1][6].rstrip("%")) <= 100
    (result,) = json.loads(next(tmp_path.glob("runs/*/result.json")).read_text())["bounds"]
    kinds = result["kinds"]
    assert {k: v["calls"] for k, v in kinds.items()} == {"GEMMs": 9, "depthwise convolutions": 4,
                                                         "dense convolutions": 4}  # fmt: skip
    assert sum(v["flops"] for v in kinds.values()) == result["forward_flops"]
    assert 0 < result["bound_fraction_of_yardstick"] < 1
