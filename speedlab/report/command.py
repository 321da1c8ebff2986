"""`python -m speedlab report [RUN_DIRS...] [--compare RUN_A RUN_B]`: tables and plots from result.json files.

Reads every result.json under the given directories (default: everything under `artifacts/`) and writes
`artifacts/report/report.md` with PNG plots beside it:
- the training table (Changes | Train epoch time | Val accuracy | speed-up vs vanilla | images/s | compile time |
  peak memory), runs of the same changes and model merged by their median;
- per bench run, the inference table (Changes | Time BS 64 | Time BS 1 | Val accuracy) and every cell's percentiles;
- latency against batch size per backend (log axes), speed-up and memory bars, and the activation measurements
  when a `bench_activations` run is present;
- the latest parity runs (sides, verdict, differences, and each run's loss plot);
- the latest monitored runs' resources (CPU, memory, GPU; mean, p95, peak) with a timeline plot each.
Every table names the machine and software it was measured on. `--compare A B` instead says, cell by cell, whether
two bench runs differ by more than their noise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from speedlab import record
from speedlab.errors import SpeedlabError
from speedlab.fsutil import atomic_write_bytes, atomic_write_text
from speedlab.report import plots
from speedlab.tables import markdown

# Parity runs and resource timelines in a report: the latest few, or the report would grow with every run.
REPORT_LATEST = 6


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m speedlab report", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", help="run directories or folders holding them (default: artifacts/)")
    parser.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"), help="compare two bench runs cell by cell")
    parser.add_argument("--out", help="report directory (default: artifacts/report)")
    args = parser.parse_args(list(argv))
    if args.compare:
        print(compare(load(Path(args.compare[0])), load(Path(args.compare[1]))))
        return 0
    roots = [Path(r) for r in args.runs] or [record.artifacts_root()]
    results = collect(roots)
    out = Path(args.out) if args.out else record.report_dir()
    unfinished = [r for r in collect(roots, finished_only=False) if r["status"] not in ("ok", "skipped")]
    path = write(results, out, unfinished)
    print(f"report: {path} ({len(results)} result.json files)")
    return 0


def load(run_dir: Path) -> dict[str, Any]:
    path = record.result_path(run_dir) if run_dir.is_dir() else run_dir
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SpeedlabError(f"{run_dir}: no readable result.json ({err})") from None
    result["_dir"] = str(path.parent)
    return result


def collect(roots: Sequence[Path], finished_only: bool = True) -> list[dict[str, Any]]:
    """Every result.json under `roots` whose run finished (`ok`), oldest first; with `finished_only=False` every
    run, its `status` read as it stands now (a killed run's "running" becomes "crashed")."""
    missing = [str(r) for r in roots if not r.exists()]
    if missing:
        raise SpeedlabError(f"no such run directory: {', '.join(missing)}")
    paths = sorted({p for root in roots for p in ([root] if root.is_file() else root.rglob(record.RESULT_FILE))})
    results = []
    for path in paths:
        try:
            result = load(path)
        except SpeedlabError as err:  # a damaged file is not a run: say which, and go on with the rest
            print(f"report: skipped {err}", file=sys.stderr)
            continue
        if "kind" not in result:
            continue
        result["status"] = record.status_of(result)
        if result["status"] == "ok" or not finished_only:
            results.append(result)
    return sorted(results, key=lambda r: r.get("started_at", ""))


def machine(result: dict[str, Any]) -> str:
    env = result.get("env", {})
    gpu = env.get("gpu")
    device = gpu["name"] if gpu else f"{env.get('cpu', {}).get('model')} ({env.get('cpu', {}).get('affinity')} cores)"
    return f"{device}; torch {env.get('torch')}, onnxruntime {env.get('onnxruntime')}, commit {_commit(env)}"


def _commit(env: dict[str, Any]) -> str:
    git = env.get("git") or {}
    return (git.get("commit") or "unknown")[:8] + ("+dirty" if git.get("dirty") else "")


def training_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (changes, model, data, machine): the median over runs, with the speed-up against the Vanilla row
    of the same model and data when there is one (None otherwise: nothing to compare with)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in results:
        if r["kind"] == "train" and r.get("mean_epoch_time_s"):
            model = (r.get("family", "convnext"), r["params"], (r.get("data") or {}).get("name"))
            groups[(r["changes"], model, machine(r).split(";")[0])].append(r)
    rows = []
    for (changes, model, where), runs in groups.items():

        def med(key: str, runs: list[dict] = runs) -> float | None:
            values = [x[key] for x in runs if x.get(key) is not None]
            return statistics.median(values) if values else None

        metric = runs[-1].get("metric", "val_acc")
        rows.append({
            "changes": changes, "model": model, "family": model[0], "params": model[1], "data": model[2],
            "machine": where, "runs": len(runs), "epoch_time_s": med("mean_epoch_time_s"), "metric": metric,
            "val": med(f"final_{metric}"), "images_per_s": med("mean_images_per_s"),
            "compile_time_s": med("compile_time_s"), "peak_memory_bytes": med("peak_memory_bytes"),
            "achieved": med("mean_achieved_flops_per_s"), "efficiency": med("efficiency"),
            "yardstick_precision": runs[-1].get("yardstick_precision"), "env": machine(runs[-1]),
        })  # fmt: skip
    for row in rows:
        base = next((b for b in rows if b["changes"] == "Vanilla" and b["model"] == row["model"]
                     and b["machine"] == row["machine"]), None)  # fmt: skip
        row["speedup"] = base["epoch_time_s"] / row["epoch_time_s"] if base else None
    return sorted(rows, key=lambda r: (r["params"], -(r["speedup"] or 0) if r["changes"] != "Vanilla" else -99))


def _val_text(row: dict[str, Any]) -> str:
    if row["val"] is None:
        return "–"
    if row["metric"] == "val_loss":  # the user's own loss: lower is better, no accuracy to show
        return f"loss {row['val']:.4g}"
    return f"MSE {row['val']:.4g}" if row["metric"] == "val_mse" else f"{row['val']:.2f} %"


def _achieved(row: dict[str, Any]) -> list[str]:
    """GFLOP/s and the share of the matmul yardstick in the run's compute dtype (two cells)."""
    flops = f"{row['achieved'] / 1e9:,.1f} GFLOP/s" if row.get("achieved") else "–"
    share = f"{row['efficiency']:.0%} ({row['yardstick_precision']})" if row.get("efficiency") else "–"
    return [flops, share]


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2f} s" if value >= 0.1 else f"{value * 1e3:.2f} ms"


def training_table(rows: list[dict[str, Any]]) -> str:
    header = ["Changes", "Train epoch time", "Val accuracy", "Speed-up vs vanilla", "Images/s", "Achieved",
              "Of matmul peak", "Compile time", "Peak memory", "Model", "Runs"]  # fmt: skip
    cells = []
    for r in rows:
        speedup = f"{r['speedup']:.2f}×" if r["speedup"] else "–"
        memory = f"{r['peak_memory_bytes'] / 2**30:.2f} GiB" if r["peak_memory_bytes"] else "–"
        compile_time = f"{r['compile_time_s']:.1f} s" if r["compile_time_s"] is not None else "–"
        model = f"{r['family']} ({r['params']:,} parameters) on {r['data']}"
        cells.append([r["changes"], _seconds(r["epoch_time_s"]), _val_text(r), speedup,
                      f"{r['images_per_s'] or 0:,.0f}", *_achieved(r), compile_time, memory, model,
                      str(r["runs"])])  # fmt: skip
    lines = [markdown(header, cells)]
    missing = [r["changes"] for r in rows if r["speedup"] is None]
    if missing:
        lines += ["", f"No speed-up for {', '.join(missing)}: no Vanilla run of the same model and data on the same "
                      "machine to compare with (train `+exp=vanilla` with the same settings to get one)."]  # fmt: skip
    return "\n".join(lines)


def inference_table(bench: dict[str, Any]) -> str:
    """The reference's shape (Changes | Time BS 64 | Time BS 1 | Val accuracy), p50 per backend and precision."""
    cells = {(r["backend"], r["precision"], r["batch_size"]): r for r in bench["rows"] if r["status"] == "ok"}
    sizes = sorted({r["batch_size"] for r in bench["rows"]}, reverse=True)
    rows = []
    for backend, precision in dict.fromkeys((r["backend"], r["precision"]) for r in bench["rows"]):
        times = [f"{cells[(backend, precision, s)]['p50_ms']:.2f} ms" if (backend, precision, s) in cells else "–"
                 for s in sizes]  # fmt: skip
        rows.append([f"{backend} ({precision})", *times, "–"])
    return markdown(["Changes", *(f"Time BS {s}" for s in sizes), "Val accuracy"], rows)


def percentile_table(bench: dict[str, Any]) -> str:
    header = ["Backend", "Precision", "Batch", "Status", "n", "p50", "p90", "p99", "min", "Images/s", "Setup",
              "Efficiency"]  # fmt: skip
    rows = []
    for r in bench["rows"]:
        head = [r["backend"], r["precision"], str(r["batch_size"])]
        if r["status"] != "ok":
            rows.append([*head, f"{r['status']}: {r['reason']}", *[""] * 8])
            continue
        eff = f"{r['efficiency']:.1%}" if r.get("efficiency") is not None else "–"
        times = [f"{r[k]:.3f} ms" for k in ("p50_ms", "p90_ms", "p99_ms", "min_ms")]
        rows.append([*head, "ok", f"{r['n']:.0f}", *times, f"{r['throughput_per_s']:,.0f}", f"{r['setup_s']:.2f} s",
                     eff])  # fmt: skip
    return markdown(header, rows)


def write(results: list[dict[str, Any]], out: Path, unfinished: list[dict[str, Any]] = ()) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    parts = ["# speedlab report", ""]
    if unfinished:
        parts += ["## Runs that did not finish", "", unfinished_table(unfinished), ""]
    train = training_rows(results)
    if train:
        parts += ["## Training", "", f"Measured on: {train[-1]['env']}.", "", training_table(train), ""]
        parts += plots.training(train, out)
    for bench in [r for r in results if r["kind"] == "bench"][-3:]:  # the latest few sweeps
        title = f"## Inference: {bench.get('name')} ({bench['params']:,} parameters, input {bench['input_shape'][1:]})"
        parts += [title, "", f"Measured on: {machine(bench)}; {bench['_dir']}.", ""]
        parts += [inference_table(bench), "", percentile_table(bench), ""]
        parts += plots.inference(bench, out)
    activations = [r for r in results if r["kind"] == "bench_activations"]
    if activations:
        parts += ["## Activations", "", f"Measured on: {machine(activations[-1])}.", ""]
        parts += plots.activations(activations[-1], out)
    parity = [r for r in results if r["kind"] == "parity"][-REPORT_LATEST:]
    if parity:
        parts += ["## Parity runs", "", parity_table(parity), ""]
        for i, run in enumerate(parity):
            parts += _copy_plot(Path(run.get("plot", "")), out, f"parity-{i + 1}.png")
    monitored = [r for r in results if Path(r.get("resources", {}).get("timeline", "")).is_file()][-REPORT_LATEST:]
    if monitored:
        parts += ["## Resources", "", resources_table(monitored), ""]
        for i, run in enumerate(monitored):
            parts += plots.resources(run, out, f"resources-{i + 1}.png")
    if len(parts) == 2:
        parts.append("No finished train or bench runs found.")
    path = out / "report.md"
    atomic_write_text(path, "\n".join(parts) + "\n")
    return path


def unfinished_table(runs: list[dict[str, Any]]) -> str:
    """Failed, interrupted and crashed runs: what they kept (finished epochs) and why they stopped."""
    rows = []
    for r in runs:
        why = r.get("reason") or ("its process is gone: killed, or the machine went down"
                                  if r["status"] == record.CRASHED else "")  # fmt: skip
        epochs = len(r.get("epochs") or []) if r["kind"] == "train" else "–"
        rows.append([r["_dir"], r["kind"], r["status"], str(epochs), (str(why).splitlines() or [""])[0][:120]])
    return markdown(["Run", "Kind", "Status", "Finished epochs", "Why"], rows)


def parity_table(runs: list[dict[str, Any]]) -> str:
    rows = []
    for i, r in enumerate(runs, start=1):
        sides = r.get("sides", {})
        w = r.get("final_weights", {})
        weights = f"{w['relative']:.3g}" if w.get("relative") is not None else "not comparable"
        rows.append([str(i), sides.get("a", {}).get("changes", "?"), sides.get("b", {}).get("changes", "?"),
                     str(r.get("steps")), r.get("verdict"), r.get("why"), f"{r.get('max_rel_difference', 0):.3g}",
                     weights])  # fmt: skip
    return markdown(["#", "A", "B", "Steps", "Verdict", "Why", "Max rel. difference", "Final weights rel. diff"], rows)


def resources_table(runs: list[dict[str, Any]]) -> str:
    """Each monitored run's CPU, memory and GPU figures, and what the sampling cost."""
    header = ["#", "Run", "Samples", "Process CPU mean / p95", "RSS peak", "Machine CPU mean", "GPU util mean",
              "Sampler CPU"]  # fmt: skip
    rows = []
    for i, r in enumerate(runs, start=1):
        res = r["resources"]
        fig = res.get("figures", {})

        def get(key: str, stat: str, fig: dict = fig) -> float | None:
            return fig.get(key, {}).get(stat)

        cpu = f"{get('process_cpu_pct', 'mean') or 0:.0f} % / {get('process_cpu_pct', 'p95') or 0:.0f} %"
        rss = f"{(get('process_rss_bytes', 'peak') or 0) / 2**30:.2f} GiB"
        gpu = f"{get('gpu_util_pct', 'mean'):.0f} %" if get("gpu_util_pct", "mean") is not None else "—"
        rows.append([str(i), f"{r['kind']}: {r.get('changes') or r.get('name', '')} ({Path(r['_dir']).name})",
                     str(res.get("samples")), cpu, rss, f"{get('machine_cpu_pct', 'mean') or 0:.0f} %", gpu,
                     f"{(res.get('sampler_cpu_fraction') or 0):.2%}"])  # fmt: skip
    return markdown(header, rows)


def _copy_plot(source: Path, out: Path, name: str) -> list[str]:
    if not source.is_file():
        return []
    atomic_write_bytes(out / name, source.read_bytes())
    return [f"![{name}]({name})", ""]


def _interval(row: dict[str, Any]) -> tuple[float, float]:
    """95 % interval of a cell's p50: across repeats when there were several, else from the per-call spread
    (the median's standard error is about 1.25 sigma / sqrt(n))."""
    if row.get("p50_ci95_ms"):
        return tuple(row["p50_ci95_ms"])
    half = 1.96 * 1.2533 * row["std_ms"] / max(row["n"], 1) ** 0.5
    return row["p50_ms"] - half, row["p50_ms"] + half


def compare(a: dict[str, Any], b: dict[str, Any]) -> str:
    if a.get("kind") != "bench" or b.get("kind") != "bench":
        raise SpeedlabError("--compare takes two bench runs (result.json with kind: bench)")
    index = lambda r: {(c["backend"], c["precision"], c["batch_size"]): c for c in r["rows"] if c["status"] == "ok"}  # noqa: E731
    cells_a, cells_b = index(a), index(b)
    rows = []
    for key in [k for k in cells_a if k in cells_b]:
        ra, rb = cells_a[key], cells_b[key]
        (lo_a, hi_a), (lo_b, hi_b) = _interval(ra), _interval(rb)
        apart = hi_a < lo_b or hi_b < lo_a
        verdict = ("B faster" if rb["p50_ms"] < ra["p50_ms"] else "B slower") if apart else "within noise"
        rows.append([key[0], key[1], str(key[2]), f"{ra['p50_ms']:.3f} ms", f"{rb['p50_ms']:.3f} ms",
                     f"{rb['p50_ms'] / ra['p50_ms']:.3f}", verdict])  # fmt: skip
    lines = [f"A: {a['_dir']} ({machine(a)})", f"B: {b['_dir']} ({machine(b)})", "",
             markdown(["Backend", "Precision", "Batch", "p50 A", "p50 B", "B / A", "Verdict"], rows)]  # fmt: skip
    only = sorted(set(cells_a) ^ set(cells_b))
    if only:
        lines += ["", "In one run only: " + ", ".join(f"{k[0]} {k[1]} batch {k[2]}" for k in only)]
    return "\n".join(lines)
