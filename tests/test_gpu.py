"""Every GPU path in one module: run it on a machine with an NVIDIA GPU, where it is the first thing to run.

    make setup && pip install -r requirements-gpu.txt   # onnxruntime-gpu, tensorrt (optional: skipped when absent)
    .venv/bin/python -m pytest -m gpu tests/test_gpu.py -v

Without a CUDA device every test here is skipped with that reason. What they cover:
- train: fp16 autocast with its GradScaler, bf16, channels_last + cudnn.benchmark + TF32, torch.compile;
- the functional step replayed as a CUDA graph, and the fused step's Triton twin, equivalent to the module step
  (parity);
- the FastSwish Triton kernels on the GPU against the float64 reference, forward and gradient, per dtype;
- bench: CUDA-event timing of eager, inductor and ONNX Runtime (CUDA provider with IOBinding), and TensorRT;
- bench: an AOTInductor package compiled for CUDA, and the inference levers (half weights in fp16 and bf16,
  channels_last, inference_mode) with `reduce-overhead` (CUDA graphs) on inductor;
- export: TensorRT engines (fp32, fp16) with their parity checks;
- the resource monitor's NVML figures (utilisation, memory, power).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from speedlab import record
from tests.conftest import TINY

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)"),
]
GPU = [*TINY, "device=cuda", "trainer.epochs=1", "trainer.max_steps=4"]


def _result(run_dir: Path) -> dict:
    return json.loads(record.result_path(run_dir).read_text())


@pytest.mark.parametrize(
    "overrides",
    [
        ["amp.enabled=true", "amp.dtype=fp16"],
        ["amp.enabled=true", "amp.dtype=bf16"],
        ["trainer.channels_last=true", "trainer.cudnn_benchmark=true", "trainer.tf32=true"],
        ["compile.enabled=true", "amp.enabled=true", "amp.dtype=fp16"],
    ],
    ids=["fp16-gradscaler", "bf16", "channels-last-tf32", "compiled-fp16"],
)
def test_training_levers_on_the_gpu(run_main, tmp_path, overrides):
    outcome = run_main("train", *GPU, *overrides, f"hydra.run.dir={tmp_path}")
    assert outcome.returncode == 0, outcome.stderr
    result = _result(tmp_path)
    assert result["status"] == "ok" and result["device"].startswith("cuda")
    assert all(torch.isfinite(torch.tensor(e["train_loss"])) for e in result["epochs"])
    if "amp.dtype=fp16" in overrides:
        state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
        assert state["scaler"] and state["scaler"]["scale"] > 0  # the GradScaler's state is checkpointed


def test_the_cuda_graph_step_matches_the_module_step(run_main, tmp_path):
    mlp = ["model=mlp", "data=matrix_exp", "data.train_size=512", "data.val_size=128", "trainer.batch_size=128",
           "trainer.epochs=2", "device=cuda", "optim.schedule=constant"]  # fmt: skip
    outcome = run_main("parity", *mlp, f"hydra.run.dir={tmp_path}", "--a", "trainer.step=module",
                       "--b", "trainer.step=graphed compile.enabled=true")  # fmt: skip
    assert outcome.returncode == 0, outcome.stderr
    assert _result(tmp_path)["verdict"] in ("identical", "equivalent")


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_the_fused_steps_triton_twin_matches_the_module_step(run_main, tmp_path, loss):
    """trainer.step=fused on a GPU: the whole MLP in one Triton kernel, AdamW in another, 100 steps through parity
    (the CPU kernel's tolerances: tests/test_fused.py)."""
    data = (
        ["data=matrix_exp", "data.train_size=600"]
        if loss == "mse"
        else ["data=synthetic", "data.train_size=600", "data.num_classes=10", "data.image_size=8", "data.resolution=8"]
    )
    outcome = run_main(
        "parity",
        "model=mlp",
        *data,
        "data.val_size=64",
        "trainer.batch_size=200",
        "device=cuda",
        "optim.schedule=constant",
        "parity.steps=100",
        "trainer.epochs=34",
        "parity.tolerance=1e-3",
        f"hydra.run.dir={tmp_path}",
        "--a",
        "trainer.step=module",
        "--b",
        "trainer.step=fused",
    )
    assert outcome.returncode == 0, outcome.stderr
    result = _result(tmp_path)
    assert result["verdict"] in ("identical", "equivalent") and result["final_weights"]["relative"] <= 5e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_triton_fastswish_kernels_on_the_gpu(dtype):
    from activations.fastswish import fastswish_derivative, fastswish_reference
    from activations.fastswish_triton import fastswish_op, implementation

    assert implementation("cuda", dtype) == "triton"
    x = (torch.randn(1 << 20, device="cuda") * 4).to(dtype).requires_grad_()
    y = fastswish_op(x)
    grad = torch.randn_like(y)
    (dx,) = torch.autograd.grad(y, x, grad)
    exact = x.detach().double()
    tol = {torch.float32: 1e-6, torch.bfloat16: 8e-3, torch.float16: 1e-3}[dtype]
    torch.testing.assert_close(y.double(), fastswish_reference(exact), rtol=tol, atol=1e-5)
    torch.testing.assert_close(dx.double(), grad.double() * fastswish_derivative(exact), rtol=tol, atol=1e-5)


def test_bench_times_every_gpu_backend_with_cuda_events(run_main, tmp_path):
    outcome = run_main(
        "bench", *GPU, "bench.backends=[eager,inductor,onnxruntime,tensorrt]", "bench.batch_sizes=[1,8]",
        "bench.precisions=[fp32,fp16]", "bench.host_to_device=true", f"hydra.run.dir={tmp_path}",
    )  # fmt: skip
    assert outcome.returncode == 0, outcome.stderr
    rows = _result(tmp_path)["rows"]
    for row in rows:
        if row["backend"] in ("eager", "inductor"):
            assert row["status"] == "ok" and row["p50_ms"] > 0 and row["host_to_device_ms"] > 0, row
        else:  # onnxruntime-gpu and TensorRT are optional extras: run, or say why not
            assert row["status"] in ("ok", "skipped"), row
    ort = [r for r in rows if r["backend"] == "onnxruntime" and r["status"] == "ok"]
    assert all(r["provider"] == "CUDAExecutionProvider" for r in ort)  # never a silent CPU fallback


def test_aotinductor_packages_and_inference_levers_on_the_gpu(run_main, tmp_path):
    outcome = run_main(
        "bench", *GPU, "bench.backends=[eager,inductor,aotinductor]", "bench.batch_sizes=[1,8]",
        "bench.precisions=[fp32,fp16,bf16]", "bench.levers=[channels_last,inference_mode,half_weights]",
        "bench.inductor.mode=reduce-overhead", f"hydra.run.dir={tmp_path}",
    )  # fmt: skip
    assert outcome.returncode == 0, outcome.stderr
    rows = _result(tmp_path)["rows"]
    package = [r for r in rows if r["backend"] == "aotinductor" and r["precision"] == "fp32"]
    assert package and all(r["status"] == "ok" and r["artifact"].endswith("-cuda.pt2") for r in package), package
    assert all(r["artifact_parity"] == "ok" for r in package)
    half = [r for r in rows if r["backend"] in ("eager", "inductor") and r["precision"] != "fp32"]
    assert half and all(r["status"] == "ok" and "half_weights" in r["levers"] for r in half), half


def test_tensorrt_engines_pass_their_parity_checks(run_main, tmp_path):
    pytest.importorskip("tensorrt", reason="tensorrt is not installed (requirements-gpu.txt)")
    outcome = run_main("export", *GPU, "export.formats=[onnx,tensorrt]", f"hydra.run.dir={tmp_path}")
    assert outcome.returncode == 0, outcome.stderr
    engines = [a for a in _result(tmp_path)["artifacts"] if a["format"] == "tensorrt"]
    assert engines and all(a["status"] == "ok" for a in engines), engines


def test_the_monitor_samples_the_gpu_through_nvml():
    from speedlab.monitor import ResourceMonitor

    monitor = ResourceMonitor(interval_s=0.02).start()
    a = torch.randn(4096, 4096, device="cuda")
    for _ in range(50):
        a @ a
    torch.cuda.synchronize()
    monitor.stop()
    summary = monitor.summary()
    assert summary["gpu"] == "nvml", summary["gpu"]
    assert summary["figures"]["gpu_memory_used_bytes"]["peak"] > 64 * 2**20
    assert summary["figures"]["gpu_util_pct"]["peak"] > 0
