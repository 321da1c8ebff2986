"""Benchmark the small-network regime: what each overhead lever buys on the reference's MLP and LeNet5.

    python scripts/bench_small.py [--mlp-epochs 2000] [--lenet-epochs 10] [--parts mlp,lenet,ops,widths,split]
                                  [--rows "by the book,Vanilla,best"]

Every row runs in a fresh process, one after the other, on this machine:
- mlp: the 4-32-16-4 tanh MLP on 10,000 matrix exponentials, full-batch AdamW, one step per epoch. Rows: the
  by-the-book loop written here as a user writes it (the reference twin), speedlab's trainer with no levers
  (Vanilla), each lever alone, and the best combination. p50/p90 of the per-step time over blocks of 100 steps
  after the warm-up, and the final train loss and val MSE (a lever that breaks training shows).
- lenet: LeNet5 on MNIST-shaped data (written once under artifacts/data/mnist-synth), batch 32, Adam 3e-4.
  Seconds for `--lenet-epochs` epochs and the val accuracy, for the by-the-book loop with a DataLoader, the same
  loop on resident tensors, Vanilla, each lever and the best combination.
- ops: time against size n (4 ... 2048) of matrix-matrix, matrix-vector and elementwise ops, allocating, in place
  (`out=`) and compiled: where per-call overhead stops mattering.
- widths: the MLP's per-step time against its hidden width (8 ... 1,024), by the book against the best levers.
- split: the MLP step's forward / backward / optimizer / other split, wall time against the time inside ops.
- onednn: which oneDNN implementation ran each LeNet5 convolution pass (forward, backward data, backward weights)
  and its mean time, from ONEDNN_VERBOSE over 30 by-the-book steps at batch 32.
- vanilla: speedlab's Vanilla against the by-the-book twin, interleaved fresh processes (`--repeats` each; LeNet5
  over 1 epoch): the lab's bookkeeping may cost at most 5 % over the loop it measures.
Writes result.json and PNG plots into a run directory under artifacts/runs/, and the tables (with the plots beside
them) to docs/results/small-networks.md and .csv; the fp32 matmul yardstick of the same run is beside every table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from speedlab import record, stats, study
from speedlab.data.sources.matrix_exp import generate
from speedlab.roofline import yardstick
from speedlab.study import Row

BLOCK = 100  # steps per timing block (MLP)
BEST_MLP = ["trainer.step=functional", "compile.enabled=true", "model.activation=fasttanh", "trainer.reuse_memory=true"]
MLP_ROWS: dict[str, list[str]] = {
    "Vanilla": [],
    "1 thread": ["trainer.threads=1"],
    "foreach AdamW": ["optim.foreach=true"],
    "fused AdamW": ["optim.fused=true"],
    "DataLoader feed": ["data.feed=loader"],
    "reused memory": ["trainer.reuse_memory=true"],
    "TC": ["compile.enabled=true"],
    "TC + compiled optimizer": ["compile.enabled=true", "trainer.step=compiled_optimizer"],
    "TC (max-autotune)": ["compile.enabled=true", "compile.mode=max-autotune"],
    "functional step": ["trainer.step=functional"],
    "functional step + TC": ["trainer.step=functional", "compile.enabled=true"],
    "fasttanh + TC": ["model.activation=fasttanh", "compile.enabled=true"],
    "best: functional + TC + fasttanh + reused memory": BEST_MLP,
    "best + 1 thread": [*BEST_MLP, "trainer.threads=1"],
    "bf16 AMP (numerics differ)": ["amp.enabled=true"],
    "fused step (native, SimpleChains-style)": ["trainer.step=fused"],
    "fused step on 1 thread": ["trainer.step=fused", "trainer.threads=1"],
}
BEST_LENET = ["trainer.step=functional", "compile.enabled=true", "trainer.reuse_memory=true"]
LENET_ROWS: dict[str, list[str]] = {
    "Vanilla": [],
    "DataLoader feed": ["data.feed=loader"],
    "1 thread": ["trainer.threads=1"],
    "foreach AdamW": ["optim.foreach=true"],
    "reused memory": ["trainer.reuse_memory=true"],
    "TC": ["compile.enabled=true"],
    "channels_last": ["trainer.channels_last=true"],
    "functional step": ["trainer.step=functional"],
    "best: functional + TC + reused memory": BEST_LENET,
    "best, batch 256 (changes the workload)": [*BEST_LENET, "trainer.batch_size=256"],
    # oneDNN runs every 5x5 convolution; without it ATen's own kernels do: what oneDNN buys, measured.
    "oneDNN off": ["trainer.onednn=false"],
    # SimpleChains' default batch on 2 threads (about 8 x 9 x threads, read from its source).
    "batch 144": ["trainer.batch_size=144"],
    "oneDNN off, batch 144": ["trainer.onednn=false", "trainer.batch_size=144"],
    "best, batch 144": [*BEST_LENET, "trainer.batch_size=144"],
    "fused step (native, SimpleChains-style)": ["trainer.step=fused"],
    "fused step, batch 144": ["trainer.step=fused", "trainer.batch_size=144"],
    # Convolution as unfold + one matmul, inside the compiled functional step (what Inductor can fuse).
    "unfold convs + best": ["model.conv=unfold", *BEST_LENET],
    "unfold convs + best, batch 144": ["model.conv=unfold", *BEST_LENET, "trainer.batch_size=144"],
    # SimpleChains' scheme with stock ops: each of two single-thread processes (DDP over gloo) takes half the batch.
    "two single-thread ranks (DDP), 16 each": ["trainer.threads=1", "trainer.batch_size=16"],
    "two single-thread ranks (DDP), 72 each": ["trainer.threads=1", "trainer.batch_size=72"],
}
# Rows launched under torchrun: the run's batch is trainer.batch_size per rank.
TWO_RANKS = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "--no-python")
LAUNCHERS = {label: TWO_RANKS for label in LENET_ROWS if label.startswith("two single-thread ranks")}


# ---------------------------------------------------------------- the reference twins (the by-the-book loops)


def book_mlp(epochs: int, threads: int | None, compiled_whole: bool = False) -> dict[str, Any]:
    """The reference's PyTorch loop: zero_grad, forward, MSE, backward, Adam step, one full batch per epoch.
    `compiled_whole`: the same step under torch.compile with Dynamo tracing the backward (torch 2.15's route to a
    compiled whole module step), to see how many graphs it becomes."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    x, y = generate(10_000, 2, 0, "train")
    vx, vy = generate(10_000, 2, 0, "val")
    model = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 4))
    opt = torch.optim.Adam(model.parameters(), lr=torch.tensor(1e-3) if compiled_whole else 1e-3)

    def step() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        return loss.detach()

    if compiled_whole:
        compiled = torch.compile(step)

        def step() -> torch.Tensor:  # noqa: F811 - the compiled twin replaces the eager one
            with torch._dynamo.config.patch(trace_autograd_ops=True):
                return compiled()

    warm = sum(_timed_steps(step, 20)[0])  # first calls (and compilation) outside the timed blocks
    times, loss = _timed_steps(step, epochs)
    with torch.no_grad():
        val = float(nn.functional.mse_loss(model(vx), vy))
    out = {"step_times_s": times, "final_train_loss": float(loss), "final_val_mse": val, "warmup_s": warm}
    if compiled_whole:
        import torch._dynamo.utils as dynamo_utils

        out["graphs"] = int(dynamo_utils.counters["stats"]["unique_graphs"])
        out["graph_breaks"] = int(sum(dynamo_utils.counters["graph_break"].values()))
    return out


def _timed_steps(step: Callable[[], torch.Tensor], n: int) -> tuple[list[float], torch.Tensor]:
    times, loss = [], None
    for _ in range(n):
        start = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - start)
    return times, loss


def book_lenet(root: str, epochs: int, resident: bool) -> dict[str, Any]:
    """The reference's LeNet5 loop: a DataLoader (batch 32, shuffled) over the normalised images, or the same
    loop slicing resident tensors; zero_grad, forward, cross-entropy, backward, Adam step."""
    from speedlab.data.sources.mnist import read_split

    torch.manual_seed(0)
    images, labels = read_split(root, "train")
    x = (torch.from_numpy(images).float() / 255 - 0.1307) / 0.3081
    y = torch.from_numpy(labels)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(256, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    dataset = torch.utils.data.TensorDataset(x, y)
    start = time.perf_counter()
    for _ in range(epochs):
        if resident:
            order = torch.randperm(len(y))
            batches = ((x[i], y[i]) for i in order[: len(y) // 32 * 32].view(-1, 32))
        else:
            batches = torch.utils.data.DataLoader(dataset, batch_size=32, shuffle=True, drop_last=True)
        for xb, yb in batches:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
    seconds = time.perf_counter() - start
    vimages, vlabels = read_split(root, "val")
    vx = (torch.from_numpy(vimages).float() / 255 - 0.1307) / 0.3081
    with torch.no_grad():
        acc = float((model(vx).argmax(1) == torch.from_numpy(vlabels)).float().mean()) * 100
    return {"train_s": seconds, "final_val_acc": acc, "final_train_loss": float(loss)}


# ---------------------------------------------------------------- rows in fresh processes


def run_speedlab(overrides: list[str], run_dir: Path, prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    """One training run through the study runner (under `prefix`, a launcher such as torchrun): its result.json,
    or the error its stderr ended with."""
    outcome = study.run_one(Row("train", "train", tuple(overrides), prefix), run_dir)
    if outcome.returncode != 0 or outcome.result is None:
        return {"error": (outcome.stderr_tail or ["failed"])[-1]}
    return outcome.result


def run_twin(kind: str, args: list[str]) -> dict[str, Any]:
    """A reference twin in a fresh process (this script with --twin)."""
    cmd = [sys.executable, __file__, "--twin", kind, *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def block_stats(step_times: list[float]) -> dict[str, float]:
    """p50 / p90 over blocks of BLOCK steps of the mean step time, in microseconds."""
    blocks = [statistics.fmean(step_times[i : i + BLOCK]) for i in range(0, len(step_times) - BLOCK + 1, BLOCK)]
    blocks = sorted(blocks) or [statistics.fmean(step_times)]
    return {"p50_us": stats.median(blocks) * 1e6, "p90_us": stats.percentile(blocks, 90) * 1e6}


def wanted(label: str, only: list[str] | None) -> bool:
    """Whether `--rows` (comma-separated substrings; none: all) selects the row `label`."""
    return not only or any(o.lower() in label.lower() for o in only)


def mlp_rows(bench_dir: Path, epochs: int, only: list[str] | None = None) -> list[dict[str, Any]]:
    rows = []
    for label, kind in (("by the book (reference twin)", "mlp"), ("by the book, compiled whole (trace_autograd_ops)",
                                                                   "mlp-compiled")):  # fmt: skip
        if not wanted(label, only):
            continue
        twin = run_twin(kind, [str(epochs)])
        rows.append({"row": label, **_mlp_figures(twin, twin.get("step_times_s"))})
        _say(rows[-1])
    for label, overrides in MLP_ROWS.items():
        if not wanted(label, only):
            continue
        run_dir = record.job_dir(bench_dir, "mlp-" + study.slug(label.split(":")[0]))
        # A DataLoader step over 10,000 single samples takes ~100 ms: a few blocks are enough to time it.
        n = min(epochs, 3 * BLOCK) if "data.feed=loader" in overrides else epochs
        result = run_speedlab(["+exp=mlp_matexp", f"trainer.epochs={n}", f"trainer.eval_every={n}",
                               "trainer.save_checkpoints=false", *overrides], run_dir)  # fmt: skip
        times = [e["train_time_s"] for e in result.get("epochs", [])]
        rows.append({"row": label, "overrides": " ".join(overrides), **_mlp_figures(result, times)})
        _say(rows[-1])
    return rows


def _mlp_figures(result: dict[str, Any], times: list[float] | None) -> dict[str, Any]:
    if "error" in result or not times:
        return {"error": result.get("error", "no epochs")}
    figures = {
        **block_stats(times), "final_train_loss": result.get("final_train_loss"),
        "final_val_mse": result.get("final_val_mse"), "compile_s": result.get("compile_time_s", result.get("warmup_s")),
    }  # fmt: skip
    for key in ("graphs", "graph_breaks", "train_fraction", "changes", "step_flops"):
        if key in result:
            figures[key] = result[key]
    return figures


def lenet_rows(bench_dir: Path, epochs: int, root: str, only: list[str] | None = None) -> list[dict[str, Any]]:
    rows = []
    for label, resident in (("by the book, DataLoader (reference twin)", False), ("by the book, resident", True)):
        if not wanted(label, only):
            continue
        twin = run_twin("lenet", [str(epochs), root, "1" if resident else "0"])
        rows.append({"row": label, **twin})
        _say(rows[-1])
    for label, overrides in LENET_ROWS.items():
        if not wanted(label, only):
            continue
        run_dir = record.job_dir(bench_dir, "lenet-" + study.slug(label))
        result = run_speedlab(["+exp=lenet5_mnist", f"data.root={root}", f"trainer.epochs={epochs}",
                               f"trainer.eval_every={epochs}", "trainer.save_checkpoints=false", *overrides],
                              run_dir, LAUNCHERS.get(label, ()))  # fmt: skip
        row = {"row": label, "overrides": " ".join(overrides)}
        if "error" in result:
            row["error"] = result["error"]
        else:
            row.update(train_s=result["total_train_time_s"], final_val_acc=result["final_val_acc"],
                       final_train_loss=result["final_train_loss"], compile_s=result["compile_time_s"])  # fmt: skip
            batch = result["config"]["trainer"]["batch_size"]  # per process, as step_flops counts it
            row["flops_per_image"] = result["step_flops"] / batch if result.get("step_flops") else None
        rows.append(row)
        _say(row)
    return rows


def _say(row: dict[str, Any]) -> None:
    shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items() if k != "overrides"}
    print(json.dumps(shown), flush=True)


def vanilla_check(bench_dir: Path, repeats: int, mlp_epochs: int, lenet_epochs: int, root: str) -> dict[str, Any]:
    """speedlab's Vanilla against the by-the-book twin, interleaved fresh processes `repeats` times each: the lab's
    own bookkeeping may cost at most 5 % over the loop it measures."""
    out: dict[str, Any] = {}
    for workload in ("mlp", "lenet"):
        book, ours = [], []
        for i in range(repeats):
            if workload == "mlp":
                twin = run_twin("mlp", [str(mlp_epochs)])
                book.append(block_stats(twin["step_times_s"])["p50_us"] * 1e-6)
                result = run_speedlab(["+exp=mlp_matexp", f"trainer.epochs={mlp_epochs}",
                                       f"trainer.eval_every={mlp_epochs}", "trainer.save_checkpoints=false"],
                                      record.job_dir(bench_dir, f"vanilla-mlp-{i}"))  # fmt: skip
                ours.append(block_stats([e["train_time_s"] for e in result["epochs"]])["p50_us"] * 1e-6)
            else:
                book.append(run_twin("lenet", [str(lenet_epochs), root, "1"])["train_s"] / lenet_epochs)
                result = run_speedlab(["+exp=lenet5_mnist", f"data.root={root}", f"trainer.epochs={lenet_epochs}",
                                       f"trainer.eval_every={lenet_epochs}", "trainer.save_checkpoints=false"],
                                      record.job_dir(bench_dir, f"vanilla-lenet-{i}"))  # fmt: skip
                ours.append(result["total_train_time_s"] / lenet_epochs)
            print(f"vanilla check {workload} {i + 1}/{repeats}: book {book[-1]:.4g} s, Vanilla {ours[-1]:.4g} s",
                  flush=True)  # fmt: skip
        out[workload] = {"book_s": book, "vanilla_s": ours,
                         "ratio": stats.median(ours) / stats.median(book)}  # fmt: skip
    return out


# ---------------------------------------------------------------- the overhead picture


def op_sweep(sizes: list[int]) -> dict[str, dict[str, list[float]]]:
    """Microseconds per call against n for n x n @ n x n, n x n @ n and elementwise tanh on n x n, each
    allocating its output, writing into a preallocated one (`out=`), and compiled."""
    from speedlab import timing

    cfg = timing.TimingCfg(3, 0.02, 20, 0.05)
    cpu = torch.device("cpu")
    torch._dynamo.config.recompile_limit = max(64, 2 * len(sizes))  # one compiled specialisation per size
    results: dict[str, dict[str, list[float]]] = {}
    ops = {
        "matmul (n x n @ n x n)": (lambda n: (torch.randn(n, n), torch.randn(n, n)), torch.mm, lambda a, b: a @ b),
        "matvec (n x n @ n)": (lambda n: (torch.randn(n, n), torch.randn(n)), torch.mv, lambda a, b: a @ b),
        "elementwise (tanh(a) * b, n x n)": (
            lambda n: (torch.randn(n, n), torch.randn(n, n)),
            None,
            lambda a, b: torch.tanh(a) * b,
        ),  # fmt: skip
    }
    for name, (make, out_op, fn) in ops.items():
        curves = {"allocating": [], "in place (out=)": [], "compiled": []}
        compiled = torch.compile(fn, dynamic=False)
        for n in sizes:
            a, b = make(n)
            out = fn(a, b)
            if out_op is None:
                tmp = torch.empty_like(a)

                def in_place(a=a, b=b, out=out, tmp=tmp) -> None:
                    torch.mul(torch.tanh(a, out=tmp), b, out=out)
            else:

                def in_place(a=a, b=b, out=out, op=out_op) -> None:
                    op(a, b, out=out)

            for label, call in (("allocating", fn), ("compiled", compiled)):
                curves[label].append(timing.measure(lambda a=a, b=b, f=call: f(a, b), cpu, cfg).p50_ms * 1e3)
            curves["in place (out=)"].append(timing.measure(in_place, cpu, cfg).p50_ms * 1e3)
        results[name] = curves
        print(f"ops: {name} done", flush=True)
    return results


def width_sweep(bench_dir: Path, widths: list[int], epochs: int) -> dict[str, list[float | None]]:
    """p50 step time (us) of a 4-w-w-4 MLP against w: by the book (Vanilla) and with the best levers."""
    curves: dict[str, list[float | None]] = {"Vanilla": [], "best levers": []}
    for w in widths:
        for label, overrides in (("Vanilla", []), ("best levers", BEST_MLP)):
            run_dir = record.job_dir(bench_dir, f"width-{w}-{label.replace(' ', '_')}")
            result = run_speedlab(["+exp=mlp_matexp", f"model.widths=[{w},{w}]", f"trainer.epochs={epochs}",
                                   f"trainer.eval_every={epochs}", "trainer.save_checkpoints=false", *overrides],
                                  run_dir)  # fmt: skip
            times = [e["train_time_s"] for e in result.get("epochs", [])]
            curves[label].append(block_stats(times)["p50_us"] if times else None)
        print(f"widths: {w} done", flush=True)
    return curves


def step_split(steps: int = 300) -> dict[str, float]:
    """Where a by-the-book MLP step's wall time goes: forward (with the loss), backward, optimizer, and the rest
    (zero_grad, Python); and how much of it the ops themselves take (the profiler's self time of aten ops)."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    x, y = generate(10_000, 2, 0, "train")
    model = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 4))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    phases = dict.fromkeys(("forward", "backward", "optimizer", "other"), 0.0)

    def step(record_phases: bool) -> None:
        t0 = time.perf_counter()
        opt.zero_grad()
        t1 = time.perf_counter()
        loss = nn.functional.mse_loss(model(x), y)
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        opt.step()
        t4 = time.perf_counter()
        if record_phases:
            phases["other"] += t1 - t0
            phases["forward"] += t2 - t1
            phases["backward"] += t3 - t2
            phases["optimizer"] += t4 - t3

    for _ in range(30):
        step(False)
    start = time.perf_counter()
    for _ in range(steps):
        step(True)
    wall = time.perf_counter() - start
    phases["other"] += wall - sum(phases.values())  # the loop and timing themselves
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        profiled = time.perf_counter()
        for _ in range(50):
            step(False)
        profiled = time.perf_counter() - profiled
    # Self time of the ops that compute (aten); under the profiler both it and the wall include its own cost, so
    # this share is a bound on the kernels' part, not an exact split.
    aten = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key.startswith("aten::")) / 1e6
    return {
        "step_us": wall / steps * 1e6,
        **{f"{k}_share": v / wall for k, v in phases.items()},
        "ops_share": min(1.0, aten / profiled),
    }


# ---------------------------------------------------------------- report


def ensure_mnist(root: Path, train: int = 60_000, val: int = 10_000) -> str:
    """MNIST-shaped files (`train` / `val` images), written once per size and reused."""
    from speedlab.data.fake import write_fake_mnist

    folder = root if (train, val) == (60_000, 10_000) else root.with_name(f"{root.name}-{train}-{val}")
    if not (folder / "train-images-idx3-ubyte.gz").exists():
        write_fake_mnist(folder, train=train, val=val, seed=0)
    return str(folder)


def _cells(rows: list[dict[str, Any]], width: int, cells: Callable[[dict[str, Any]], list[str]]) -> list[list[str]]:
    """Each bench row's label, then `cells(row)`, or the error the row ended with."""
    return [[r["row"], *(([f"error: {r['error']}"] + [""] * (width - 2)) if "error" in r else cells(r))]
            for r in rows]  # fmt: skip


def mlp_table(rec: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    book = next((r for r in rec["mlp"] if r["row"].startswith("by the book (")), {}).get("p50_us")
    # Every row trains the same network on the same batch: one step's FLOPs (forward and backward, counted by
    # torch's flop counter in a speedlab row's warm-up) over its p50, against the run's starting yardstick.
    flops = next((r["step_flops"] for r in rec["mlp"] if r.get("step_flops")), None)
    peak = rec["yardstick_gflops"] * 1e9

    def share(r: dict[str, Any]) -> str:
        return f"{flops / (r['p50_us'] * 1e-6) / peak:.1%}" if flops else "–"

    header = ["Row", "p50 µs/step", "p90 µs/step", "vs book", "of fp32 yardstick", "final train loss", "val MSE",
              "compile s"]  # fmt: skip
    return header, _cells(rec["mlp"], len(header), lambda r: [
        f"{r['p50_us']:.0f}", f"{r['p90_us']:.0f}", f"{book / r['p50_us']:.2f}×" if book else "", share(r),
        f"{r['final_train_loss']:.5f}", f"{r['final_val_mse']:.5f}", f"{r.get('compile_s') or 0:.1f}"])  # fmt: skip


def lenet_table(rec: dict[str, Any]) -> study.Table:
    book = next((r for r in rec["lenet"] if "DataLoader (reference" in r["row"]), {}).get("train_s")
    epochs, images = rec["args"]["lenet_epochs"], rec["args"]["lenet_images"]
    # A training image's forward and backward FLOPs (torch's flop counter in a speedlab row's warm-up), every
    # image of every epoch, over the row's training time, against the run's starting yardstick.
    per_image = next((r["flops_per_image"] for r in rec["lenet"] if r.get("flops_per_image")), None)
    peak = rec["yardstick_gflops"] * 1e9

    def share(r: dict[str, Any]) -> str:
        return f"{per_image * images * epochs / r['train_s'] / peak:.1%}" if per_image else "–"

    header = ["Row", "s / 10 epochs", "vs book (DataLoader)", "of fp32 yardstick", "val top-1 %", "final train loss"]
    rows = _cells(rec["lenet"], len(header), lambda r: [
        f"{r['train_s'] * 10 / epochs:.1f}", f"{book / r['train_s']:.2f}×" if book else "", share(r),
        f"{r['final_val_acc']:.2f}", f"{r['final_train_loss']:.4f}"])  # fmt: skip
    note = (
        f"Seconds for 10 epochs = the {epochs} measured epochs' training time × {10 / epochs:g}"
        + (" (projected)." if epochs != 10 else ".")
        + (f" A training image is {per_image / 1e6:.2f} MFLOP (forward and backward)." if per_image else "")
    )
    title = f"LeNet5, MNIST-shaped {images:,} images, batch 32 unless the row says, Adam 3e-4: {epochs} epochs per row"
    return study.Table("lenet", title, header, rows, [note])


def vanilla_table(rec: dict[str, Any]) -> study.Table:
    v, rows = rec["vanilla"], []
    for name, unit, scale in (("mlp", "µs/step", 1e6), ("lenet", "s/epoch", 1)):
        if name in v:
            b, o = stats.median(v[name]["book_s"]) * scale, stats.median(v[name]["vanilla_s"]) * scale
            runs = " / ".join(f"{t * scale:.4g}" for t in v[name]["book_s"]) + " against " + " / ".join(
                f"{t * scale:.4g}" for t in v[name]["vanilla_s"])  # fmt: skip
            rows.append([f"{name} ({runs})", f"{b:.4g} {unit}", f"{o:.4g} {unit}", f"{v[name]['ratio']:.3f}"])
    return study.Table("vanilla", "speedlab's Vanilla against the by-the-book loop (interleaved fresh processes, "
                       "medians)", ["Workload (runs: book against Vanilla)", "book", "Vanilla", "Vanilla / book"],
                       rows)  # fmt: skip


def write_study(rec: dict[str, Any], name: str, results_dir: Path) -> Path:
    """The MLP rows as the study's main table (or the first part that ran), the others as further tables and notes;
    the plots copied beside it as `<study>-<plot>.png`."""
    args = rec["args"]
    notes = [f"fp32 matmul yardstick of this run: {rec['yardstick_gflops']:.0f} GFLOP/s at the start, "
             f"{rec.get('yardstick_gflops_end', 0):.0f} at the end."]  # fmt: skip
    more = []
    if rec.get("lenet"):
        more.append(lenet_table(rec))
    if rec.get("onednn"):
        more.append(onednn_table(rec))
    if rec.get("vanilla"):
        more.append(vanilla_table(rec))
    if rec.get("mlp"):
        header, rows = mlp_table(rec)
        title = f"Small networks: the MLP 4-32-16-4, 10,000 samples full batch, {args['mlp_epochs']} steps per row"
    elif more:
        first = more.pop(0)
        header, rows, title, notes = first.header, first.rows, f"Small networks: {first.title}", [*first.notes, *notes]
    else:
        header, rows, title = ["Part"], [[p] for p in args["parts"].split(",")], "Small networks"
    if rec.get("split"):
        s = rec["split"]
        notes += ["", f"Where a by-the-book MLP step goes: {s['step_us']:.0f} µs, forward {s['forward_share']:.0%}, "
                  f"backward {s['backward_share']:.0%}, optimizer {s['optimizer_share']:.0%}, other "
                  f"{s['other_share']:.0%}; inside aten ops {s['ops_share']:.0%}, framework overhead the other "
                  f"{1 - s['ops_share']:.0%}."]  # fmt: skip
    for png in rec.get("plots", []):
        target = Path(results_dir) / f"{name}-{Path(png).name}"
        shutil.copyfile(png, target)
        notes += ["", f"![{Path(png).stem}]({target.name})"]
    options = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in args.items()
                       if k in ("parts", "mlp_epochs", "lenet_epochs", "lenet_images", "repeats") and v)  # fmt: skip
    notes += ["", f"Command: `python scripts/bench_small.py {options}`"]
    md, _ = study.write(name, header, rows, title=title, machine=study.machine_of(rec), notes=notes, more=more,
                        results_dir=results_dir)  # fmt: skip
    return md


def plots(rec: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []

    def loglog(ax, xs: list[int], curves: dict[str, list], title: str, xlabel: str, ylabel: str) -> None:
        for label, values in curves.items():
            ax.loglog(xs, values, marker="o", label=label)
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()

    def save(fig, name: str) -> None:
        fig.tight_layout()
        written.append(str(out / name))
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)

    if rec.get("ops"):
        fig, axes = plt.subplots(1, len(rec["ops"]), figsize=(5 * len(rec["ops"]), 4))
        for ax, (name, curves) in zip(axes, rec["ops"].items(), strict=True):
            loglog(ax, rec["args"]["sizes"], curves, name, "n", "µs per call")
        save(fig, "ops_vs_size.png")
    if rec.get("widths"):
        fig, ax = plt.subplots(figsize=(6, 4))
        title = "MLP 4-w-w-4, 10,000 samples: step time vs width"
        loglog(ax, rec["args"]["widths"], rec["widths"], title, "hidden width w", "µs/step")
        save(fig, "mlp_width.png")
    return written


def onednn_dump(root: str, steps: int = 30) -> list[dict[str, Any]]:
    """Which oneDNN implementation ran each of LeNet5's convolution passes: the by-the-book step (batch 32) for
    `steps` steps under ONEDNN_VERBOSE=1 in a fresh process, its `exec` lines tallied per propagation kind,
    implementation and shape (calls and mean ms; the first 5 steps left out as warm-up)."""
    env = {**os.environ, "ONEDNN_VERBOSE": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, __file__, "--twin", "onednn", root, str(steps)], capture_output=True,
                          text=True, env=env)  # fmt: skip
    if done.returncode != 0:
        return [{"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}]
    lines = [line.split(",") for line in done.stdout.splitlines() if line.startswith("onednn_verbose")]
    execs = [f for f in lines if "exec" in f[:4] and "convolution" in f]
    per_step = len(execs) // max(1, steps)
    tally: dict[tuple[str, str, str], list[float]] = {}
    for f in execs[5 * per_step :]:
        kind = f[f.index("convolution") + 2]  # forward_training, backward_data, backward_weights
        impl = f[f.index("convolution") + 1]
        tally.setdefault((kind, impl, f[-2]), []).append(float(f[-1]))
    return [{"pass": k, "implementation": impl, "shape": shape, "calls": len(ms), "mean_ms": statistics.fmean(ms)}
            for (k, impl, shape), ms in sorted(tally.items(), key=lambda item: -sum(item[1]))]  # fmt: skip


def onednn_table(rec: dict[str, Any]) -> study.Table:
    rows = [[r["pass"], r["implementation"], r["shape"], str(r["calls"]), f"{r['mean_ms']:.4f}"] if "error" not in r
            else [f"error: {r['error']}", "", "", "", ""] for r in rec["onednn"]]  # fmt: skip
    return study.Table("lenet-onednn", "LeNet5's convolutions inside oneDNN (ONEDNN_VERBOSE, by-the-book step, batch "
                       "32)", ["Pass", "Implementation", "Shape", "Calls", "Mean ms"], rows)  # fmt: skip


def book_lenet_steps(root: str, steps: int) -> None:
    """The by-the-book LeNet5 step, `steps` times on resident batches of 32 (for oneDNN's verbose log)."""
    from speedlab.data.sources.mnist import read_split

    torch.manual_seed(0)
    images, labels = read_split(root, "train")
    x = (torch.from_numpy(images[: 32 * steps]).float() / 255 - 0.1307) / 0.3081
    y = torch.from_numpy(labels[: 32 * steps])
    batches = len(y) // 32  # a small data set's batches again, in turn
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(256, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    for i in range(steps):
        at = 32 * (i % batches)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[at : at + 32]), y[at : at + 32]).backward()
        opt.step()


def twin_main(argv: list[str]) -> None:
    kind = argv[0]
    if kind == "mlp":
        print(json.dumps(book_mlp(int(argv[1]), None)))
    elif kind == "mlp-compiled":
        print(json.dumps(book_mlp(int(argv[1]), None, compiled_whole=True)))
    elif kind == "lenet":
        print(json.dumps(book_lenet(argv[2], int(argv[1]), resident=argv[3] == "1")))
    elif kind == "onednn":
        book_lenet_steps(argv[1], int(argv[2]))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--twin":
        twin_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="mlp,lenet,ops,widths,split,vanilla,onednn")
    parser.add_argument("--rows", default="", help="only rows whose label contains one of these (comma-separated)")
    parser.add_argument("--mlp-epochs", type=int, default=2000)
    parser.add_argument("--lenet-epochs", type=int, default=10)
    parser.add_argument("--width-epochs", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3, help="vanilla: interleaved repeats of book and Vanilla")
    parser.add_argument("--sizes", default="4,8,16,32,64,128,256,512,1024,2048")
    parser.add_argument("--widths", default="8,16,32,64,128,256,512,1024")
    parser.add_argument("--lenet-images", type=int, default=60_000, help="training images (val: a sixth of them)")
    parser.add_argument("--study", default="small-networks", help="docs/results/<study>.md and .csv")
    parser.add_argument("--results-dir", type=Path, default=study.RESULTS_DIR, help="where the study's tables go")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    unknown = parts - {"mlp", "lenet", "ops", "widths", "split", "vanilla", "onednn"}
    if unknown:
        parser.error(f"--parts: unknown {sorted(unknown)}; valid: mlp, lenet, ops, widths, split, vanilla, onednn")
    cfg = {**vars(args), "results_dir": str(args.results_dir), "sizes": [int(s) for s in args.sizes.split(",")],
           "widths": [int(w) for w in args.widths.split(",")]}  # fmt: skip
    only = [r.strip() for r in args.rows.split(",") if r.strip()] or None
    mnist_dir = record.artifacts_root() / "data" / "mnist-synth"
    bench_dir = record.new_run_dir("bench_small")
    with record.recording(bench_dir, "bench_small", {"args": cfg}) as rec:
        rec["args"] = cfg
        rec["yardstick_gflops"] = yardstick(torch.device("cpu"), "fp32") / 1e9
        print(f"fp32 matmul yardstick: {rec['yardstick_gflops']:.0f} GFLOP/s", flush=True)
        if "split" in parts:
            rec["split"] = step_split()
        if "mlp" in parts:
            rec["mlp"] = mlp_rows(bench_dir, args.mlp_epochs, only)
            rec.save()
        if "lenet" in parts:
            root = ensure_mnist(mnist_dir, args.lenet_images, args.lenet_images // 6)
            rec["lenet"] = lenet_rows(bench_dir, args.lenet_epochs, root, only)
            rec.save()
        if "onednn" in parts:
            rec["onednn"] = onednn_dump(ensure_mnist(mnist_dir, args.lenet_images, args.lenet_images // 6))
            rec.save()
        if "vanilla" in parts:
            root = ensure_mnist(mnist_dir, args.lenet_images, args.lenet_images // 6)
            rec["vanilla"] = vanilla_check(bench_dir, args.repeats, args.mlp_epochs, 1, root)
            rec.save()
        if "ops" in parts:
            rec["ops"] = op_sweep(cfg["sizes"])
        if "widths" in parts:
            rec["widths"] = width_sweep(bench_dir, cfg["widths"], args.width_epochs)
        rec["plots"] = plots(rec.data, bench_dir)
        rec["yardstick_gflops_end"] = yardstick(torch.device("cpu"), "fp32") / 1e9
    md = write_study(rec.data, args.study, args.results_dir)
    print("\n" + md.read_text())
    print(f"results: {md}, {record.result_path(bench_dir)}")


if __name__ == "__main__":
    main()
