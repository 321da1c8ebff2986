"""`python -m speedlab bench [overrides]`: inference latency of one model across backends x batch sizes x precisions.

The model is the configured family on the configured data's input shape and outputs (freshly initialised), or the
one `weights=` holds, whose family, config and data shape then come from the checkpoint.

Each cell (backend, precision, batch size, and requests in flight: `bench.concurrency`) is prepared (compiled,
exported, session or engine built: `setup_s`), warmed up and timed until both a minimum count and a minimum time
(see `timing.py`), `bench.repeats` times afresh; a cell with several requests in flight counts images per second
over the wall time instead of a batch per p50.
Alongside latency percentiles: throughput, FLOPs (`torch.utils.flop_counter`, FLOPs not MACs) and achieved FLOP/s,
and its fraction of the machine's own yardstick, a large matmul in the cell's dtype measured in the same run. A cell
that runs out of memory or fails is recorded (`oom`, `error`) and the sweep goes on. Writes result.json
(`kind: bench`, one row per cell) and prints a table with each backend's speed-up over eager.
"""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from speedlab import checkpoint, config, device, models, record, roofline, samples, stats, status, tables, timing
from speedlab.bench import backends, levers
from speedlab.bench.artifacts import model_file
from speedlab.bench.backends import BenchSetup
from speedlab.config import BenchJob, RunContext
from speedlab.data.build import describe
from speedlab.data.spec import DataSpec
from speedlab.energy import EnergyMeter, meter, per_call
from speedlab.errors import SpeedlabError
from speedlab.monitor import PeakMemory

FAILED_STATUSES = status.CELL_FAILURES  # what makes a bench run exit 1 ("skipped": cannot run here, not a failure)
STAT_KEYS = ("mean_ms", "std_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms", "min_ms", "first_call_ms")


def run(ctx: RunContext, given: tuple[torch.nn.Module, DataSpec] | None = None) -> int:
    """The bench command; `given` is a model and what its inputs are, handed over by the Python API
    (`speedlab.bench`), in place of the config's family, checkpoint or file."""
    cfg = ctx.cfg
    with record.recording(ctx.run_dir, "bench", ctx.resolved, sweep=ctx.sweep) as rec:
        where = device.resolve(cfg.device)
        if given is not None:
            model, spec = given[0].eval().to(where), given[1]
            model_cfg, file, source, notes = None, None, f"Python object {type(given[0]).__name__}", []
        elif cfg.source:
            model, model_cfg, file = None, None, model_file(cfg.source, cfg.bench.input_shape)
            spec, source, notes = file.spec, f"file {file.path}", file.notes
        else:
            (model, model_cfg, spec, source, notes), file = _model(ctx, where), None
        setup = BenchSetup.for_job(model, cfg, where, spec, ctx.run_dir, file)
        swept = backends.expand(cfg.bench.backends, setup, cfg.bench.precisions)
        if cfg.bench.isolate and given is not None:
            raise SpeedlabError(
                "bench.isolate=true runs each backend in a fresh process, which rebuilds the model "
                "from the config; a Python object cannot be handed over: bench it without isolate"
            )
        backends.refuse(cfg.bench.backends, setup, cfg.bench.precisions)
        levers.check(cfg.bench.levers, swept, spec if model is not None else None, cfg.bench.precisions)
        flops_per_image = count_flops(model, spec, where) if model is not None else None
        rec.update({
            "name": cfg.name, "device": str(where),
            "family": model_cfg.name if model_cfg else file.kind if file else "python",
            "model_source": source, "model_file": file.record() if file else None,
            "model_config": config.plain(model_cfg) if model_cfg else None,
            "params": models.count_params(model) if model is not None else None,
            "flops_per_image": flops_per_image, "macs_per_image": flops_per_image // 2 if flops_per_image else None,
            "input_shape": [None, *spec.input_shape], "data_spec": spec.record(),
            "timing": _timing_cfg(cfg).__dict__, "repeats": cfg.bench.repeats, "notes": notes,
        })  # fmt: skip
        for note in notes:
            print(f"note: {note}")
        if model is None:
            print(f"{source}: {spec.describe()} on {where} (no PyTorch model: FLOPs unknown)", flush=True)
        else:
            print(f"{rec['params']:,} parameters ({source}), {spec.describe()}, {flops_per_image / 1e9:.4g} GFLOPs "
                  f"({flops_per_image / 2e9:.4g} GMACs) per sample on {where}", flush=True)  # fmt: skip
        rec["yardstick_flops_per_s"] = {p: roofline.yardstick(where, p) for p in cfg.bench.precisions}
        counter = meter(where) if cfg.bench.energy else "bench.energy=false"
        rec["energy"] = {"source": counter.source} if isinstance(counter, EnergyMeter) else {
            "unavailable": counter}  # fmt: skip
        setup.shared["energy_meter"] = counter if isinstance(counter, EnergyMeter) else None
        rec["rows"], series = [], {}
        rec["backends"] = swept
        for backend_name in swept:
            if cfg.bench.isolate and len(swept) > 1:
                cells = _isolated(ctx, backend_name, series)
            else:
                cells = _cells(backends.create(backend_name), setup, cfg, flops_per_image, rec, series)
            for row in cells:
                if series:
                    rec["samples"] = {"file": samples.write(ctx.run_dir, series), "unit": "ms"}
                rec["rows"] = [*rec["rows"], row]
                rec.save()
                print(_cell_line(row), flush=True)
        rec["export_s"] = setup.shared.get("export_s")
        failed = [r for r in rec["rows"] if r["status"] in FAILED_STATUSES]
        rec["failed_cells"] = len(failed)
        print("\n" + table(rec["rows"]))
        print(f"\nresult: {rec.path}")
    if failed:
        names = ", ".join(f"{r['backend']} {r['precision']} batch {r['batch_size']} ({r['status']})" for r in failed)
        print(f"{len(failed)} of {len(rec['rows'])} cells failed: {names}", file=sys.stderr)
    return 1 if failed else 0  # a sweep goes on to its next job and exits 1 at the end (cli.run)


def _cells(backend, setup: BenchSetup, cfg: BenchJob, flops_per_image, rec, series: dict) -> Iterator[dict]:
    """Each of a backend's cells (precision x batch size) in this process, as it finishes."""
    for precision in cfg.bench.precisions:
        for batch_size in cfg.bench.batch_sizes:
            for requests in cfg.bench.concurrency:
                row = _cell(backend, setup, cfg, (precision, batch_size, requests), flops_per_image,
                            rec["yardstick_flops_per_s"])  # fmt: skip
                _keep_samples(row, series)
                yield row


def _isolated(ctx: RunContext, backend: str, series: dict) -> list[dict]:
    """A backend's cells measured by a bench process of its own (the run's overrides, that backend alone), its rows
    and raw samples taken into this run; a process that dies leaves an `error` row per cell, with its exit code and
    last lines, and the sweep goes on."""
    child = ctx.run_dir / "isolated" / backend
    overrides = [o for o in ctx.overrides if not o.split("=", 1)[0].lstrip("+~").startswith("hydra.")]
    command = [sys.executable, "-m", "speedlab.entry.bench", *overrides, f"bench.backends=[{backend}]",
               "bench.isolate=false", f"hydra.run.dir={child}"]  # fmt: skip
    print(f"{backend}: in a process of its own ({child})", flush=True)
    done = subprocess.run(command, capture_output=True, text=True)
    try:
        rows = json.loads(record.result_path(child).read_text())["rows"]
    except (OSError, ValueError, KeyError):
        rows = []
    cfg = ctx.cfg
    if not rows or done.returncode not in (0, 1):
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])[-500:]
        why = f"its bench process exited with {done.returncode} ({tail or 'no output'})"
        b = cfg.bench
        return [{"backend": backend, "precision": p, "batch_size": size, "concurrency": n, "status": status.ERROR,
                 "reason": why} for p in b.precisions for size in b.batch_sizes for n in b.concurrency]  # fmt: skip
    keys = [k for r in rows for k in r.get("samples", [])]
    series.update(samples.read(child, keys) if keys else {})
    return [{**r, "isolated": True} for r in rows]


def _model(ctx: RunContext, where: torch.device):
    """(eval-mode model on `where`, its config, the data spec, where it came from, notes): a checkpoint's trained
    model, or a freshly initialised one of the run's family for the run's data."""
    cfg = ctx.cfg
    if cfg.weights:
        trained = checkpoint.load_trained(cfg.weights, "weights", ctx.resolved["model"], ctx.overridden("model"))
        return trained.model.eval().to(where), trained.cfg, trained.spec, f"checkpoint {trained.path}", trained.notes
    spec = describe(cfg.data)
    models.check(cfg.model, spec)
    torch.manual_seed(cfg.seed)
    model = models.build(cfg.model, spec)
    return model.eval().to(where), cfg.model, spec, f"fresh initialisation (seed {cfg.seed})", []


def _timing_cfg(cfg: BenchJob) -> timing.TimingCfg:
    b = cfg.bench
    return timing.TimingCfg(b.warmup_iters, b.warmup_min_s, b.min_iters, b.min_time_s)


def count_flops(model: torch.nn.Module, spec: DataSpec, where: torch.device) -> int:
    """FLOPs of one sample's forward pass (a multiply-add counts two), at the data's input shape."""
    return roofline.forward_flops(model, spec.example(1, device=where))


def _cell(backend, setup: BenchSetup, cfg: BenchJob, where: tuple[str, int, int], flops_per_image: int,
          yardsticks) -> dict:  # fmt: skip
    """One cell: `where` is its (precision, batch size, requests in flight)."""
    precision, batch_size, requests = where
    row: dict[str, Any] = {"backend": backend.name, "precision": precision, "batch_size": batch_size,
                           "concurrency": requests}  # fmt: skip
    reason = (setup.file_unsupported(backend, precision, batch_size) or backend.unsupported(setup, precision)
              or _concurrency_unsupported(backend, setup, requests))  # fmt: skip
    if reason:
        return {**row, "status": "skipped", "reason": reason}
    repeats = []
    limit = cfg.bench.cell_timeout_s
    for _ in range(cfg.bench.repeats):
        try:
            with time_limit(limit):
                repeats.append(_measure_once(backend, setup, cfg, where))
        except CellTimeout:
            return {**row, "status": "timeout", "reason": f"still running after bench.cell_timeout_s={limit} s"}
        except Exception as err:  # noqa: BLE001 - a failing cell is recorded and the sweep goes on
            status = "oom" if _is_oom(err) else "error"
            return {**row, "status": status, "reason": f"{type(err).__name__}: {str(err).strip()[:1000]}"}
    row.update(status="ok", reason=None, **_combine(repeats))
    row.setdefault("levers", [])  # stated on every row: a backend that runs its own artifact applies none
    # One request at a time: a batch per p50. Several: what came back over the wall time (the requests overlap).
    per_s = row.pop("answers_per_s", None) if requests > 1 else 1e3 / row["p50_ms"]
    row["throughput_per_s"] = batch_size * per_s
    if cfg.bench.host_to_device:
        row["host_to_device_ms"] = host_to_device_ms(setup, cfg, batch_size)
    if flops_per_image is None:  # a model file: no PyTorch model to count
        row.update(flops=None, macs=None, achieved_flops_per_s=None, efficiency=None)
        return row
    row["flops"] = flops_per_image * batch_size
    row["macs"] = row["flops"] // 2  # multiply-adds: what many libraries (fvcore, thop, ptflops) label "FLOPs"
    row["achieved_flops_per_s"] = flops_per_image * row["throughput_per_s"]
    peak = yardsticks.get(precision)
    row["efficiency"] = row["achieved_flops_per_s"] / peak if peak else None
    return row


def host_to_device_ms(setup: BenchSetup, cfg: BenchJob, batch_size: int) -> float | None:
    """p50 of copying the cell's fp32 input batch from pinned host memory to the device; None on the CPU, where
    inputs never move."""
    if setup.device.type != "cuda":
        return None
    host = setup.inputs(batch_size).cpu().pin_memory()
    latency = timing.measure(lambda: host.to(setup.device, non_blocking=True), setup.device, _timing_cfg(cfg))
    return latency.p50_ms


def _keep_samples(row: dict[str, Any], series: dict[str, Any]) -> None:
    """Move the cell's per-call latencies (one list per repeat) from `row` into `series`, naming them in the row."""
    per_repeat = row.pop("samples_ms", None)
    if not per_repeat:
        return
    base = f"{row['backend']}.{row['precision']}.b{row['batch_size']}"
    base += f".c{row['concurrency']}" if row.get("concurrency", 1) > 1 else ""
    row["samples"] = [f"{base}.r{i}" for i in range(len(per_repeat))]
    series.update(zip(row["samples"], per_repeat, strict=True))


def _concurrency_unsupported(backend, setup: BenchSetup, requests: int) -> str | None:
    """Why a cell cannot keep `requests` requests in flight here, or None."""
    if requests == 1:
        return None
    if not getattr(backend, "concurrent_requests", False):
        able = [n for n in backends.names() if backends.concurrent(n)]
        return f"{backend.name} runs one request at a time here (concurrent requests: {', '.join(able)})"
    if setup.device.type != "cpu":
        return "concurrent requests are measured on the CPU (device=cpu)"
    return None


def _measure_once(backend, setup: BenchSetup, cfg: BenchJob, where: tuple[str, int, int]) -> dict[str, Any]:
    precision, batch_size, requests = where
    with PeakMemory(setup.device) as memory:
        prepared = backend.prepare(setup, batch_size, precision)
        frames_before = prepared.frames_compiled() if prepared.frames_compiled else 0
        if requests == 1:
            latency, extra = timing.measure(prepared.run, setup.device, _timing_cfg(cfg)), {}
        else:
            with _torch_threads_kept():
                served = timing.measure_concurrent(prepared.concurrent(requests), _timing_cfg(cfg))
            latency, extra = served.latency, {"answers_per_s": served.answers_per_s, "wall_s": served.wall_s}
        recompiles = (prepared.frames_compiled() - frames_before) if prepared.frames_compiled else 0
    # The energy window runs one request at a time: a figure for the latency cells only.
    figures = _energy(prepared.run, setup.shared.get("energy_meter"), batch_size) if requests == 1 else {}
    return {**latency.record(), **extra, **figures, "samples_ms": latency.samples_ms, "setup_s": prepared.setup_s,
            "peak_memory_bytes": memory.peak_bytes(),
            "peak_memory_kind": memory.kind, "recompiles": recompiles, **prepared.notes}  # fmt: skip


@contextmanager
def _torch_threads_kept() -> Iterator[None]:
    """torch's thread count as it was before a cell that split the threads among requests in flight."""
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _energy(run, counter: EnergyMeter | None, batch_size: int) -> dict[str, float]:
    """Joules per inference and images per joule of a prepared cell, where the machine's counter is readable."""
    if counter is None:
        return {}
    joules, _ = per_call(run, counter)
    if joules <= 0:  # a counter that did not move in the window: too coarse to say anything
        return {}
    return {"joules_per_inference": joules, "images_per_joule": batch_size / joules}


def _combine(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """One repeat as it is; several: the median of each figure, the 95 % interval of p50 and its spread. Every
    repeat's calls are kept (`samples_ms`, one list per repeat)."""
    per_repeat = [r.pop("samples_ms") for r in repeats]
    if len(repeats) == 1:
        return {**repeats[0], "samples_ms": per_repeat}
    out = dict(repeats[0], samples_ms=per_repeat)
    for key in (*STAT_KEYS, "setup_s", "peak_memory_bytes", "n"):
        out[key] = stats.median([r[key] for r in repeats])
    for key in ("joules_per_inference", "images_per_joule", "answers_per_s", "wall_s"):
        if all(key in r for r in repeats):
            out[key] = stats.median([r[key] for r in repeats])
    out["too_few_for"] = max((r["too_few_for"] for r in repeats), key=len)
    p50s = [r["p50_ms"] for r in repeats]
    _, low, high = stats.median_interval(p50s)
    out["recompiles"] = max(r["recompiles"] for r in repeats)
    out.update(repeat_p50_ms=p50s, p50_ci95_ms=[low, high], p50_cv=statistics.stdev(p50s) / statistics.mean(p50s))
    return out


class CellTimeout(Exception):
    """A cell ran past `bench.cell_timeout_s`."""


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise CellTimeout in this (main) thread once `seconds` have passed. A real-time timer's signal interrupts
    Python code and the waits that return to it (sleeps, most blocking calls); a kernel that never returns to the
    interpreter is stopped when it does."""
    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame) -> None:
        raise CellTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _is_oom(err: BaseException) -> bool:
    text = str(err).lower()
    return (
        isinstance(err, (torch.cuda.OutOfMemoryError, MemoryError))
        or "out of memory" in text
        or ("failed to allocate memory" in text)
    )


def _cell_line(row: dict[str, Any]) -> str:
    head = f"{row['backend']:<12} {row['precision']:<5} batch {row['batch_size']:<4}"
    head += f" x{row['concurrency']} in flight" if row.get("concurrency", 1) > 1 else ""
    if row["status"] != "ok":
        return f"{head} {row['status']}: {row['reason']}"
    return (
        f"{head} p50 {row['p50_ms']:.3f} ms (p90 {row['p90_ms']:.3f}, p99 {row['p99_ms']:.3f}, n={row['n']:.0f}), "
        f"{row['throughput_per_s']:,.0f} img/s, setup {row['setup_s']:.1f} s"
        + (f", {row['images_per_joule']:,.1f} images/J" if "images_per_joule" in row else "")
    )


TABLE_HEADER = ["Backend", "Precision", "Batch", "p50", "p90", "p99", "Speed-up vs eager", "Images/s", "Setup",
                "Efficiency"]  # fmt: skip


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one line per cell, with the speed-up over eager's cell of the same precision, batch size and
    requests in flight (in images per second, which one request at a time makes the ratio of p50s). The "In
    flight" column only when the sweep kept several requests in flight."""

    def key(r: dict[str, Any]) -> tuple:
        return r["precision"], r["batch_size"], r.get("concurrency", 1)

    eager = {key(r): r["throughput_per_s"] for r in rows if r["backend"] == "eager" and "throughput_per_s" in r}
    flight = any(r.get("concurrency", 1) > 1 for r in rows)
    header = [*TABLE_HEADER[:3], *(["In flight"] if flight else []), *TABLE_HEADER[3:]]
    lines = []
    for r in rows:
        head = [r["backend"], r["precision"], str(r["batch_size"]), *([str(r.get("concurrency", 1))] if flight else [])]
        if r["status"] != "ok":
            lines.append([*head, f"{r['status']}: {r['reason'][:80]}", *[""] * 6])
            continue
        base = eager.get(key(r))
        lines.append([
            *head, f"{r['p50_ms']:.3f} ms", f"{r['p90_ms']:.3f} ms", f"{r['p99_ms']:.3f} ms",
            f"{r['throughput_per_s'] / base:.2f}×" if base else "–", f"{r['throughput_per_s']:,.0f}",
            f"{r['setup_s']:.2f} s", f"{r['efficiency']:.1%}" if r.get("efficiency") is not None else "–",
        ])  # fmt: skip
    return tables.markdown(header, lines, right=[h not in ("Backend", "Precision") for h in header])
