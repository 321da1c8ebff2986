"""`python -m speedlab report [RUN_DIRS...] [--html]`: tables and plots from result.json files.

Reads every result.json under the given directories (default: everything under `artifacts/`) and writes
`artifacts/report/report.md` with PNG plots and a CSV of every table beside it (`--html`: also `report.html`, one
self-contained file with the plots inside, to send or attach):
- the training table (Changes | Batch | Precision | Train epoch time | Val accuracy | speed-up vs vanilla | ...):
  one row per fingerprint (`speedlab.fingerprint`), so runs that differ in anything that changes speed (batch size,
  precision, epochs, machine, versions, commit) never merge; a speed-up only against the Vanilla of the same
  workload, and where there is none the report says what differs;
- per bench run, the inference table (Changes | Time BS 64 | Time BS 1 | Val accuracy) and every cell's percentiles
  (p50, p90, p95, p99, max; those too few calls cannot resolve are marked);
- latency against batch size per backend (log axes), every timed call per cell as a box plot (read back from the
  run's raw samples), speed-up and memory bars, and the activation measurements
  when a `bench_activations` run is present;
- the latest parity runs (sides, verdict, differences, and each run's loss plot);
- the latest monitored runs' resources (CPU, memory, GPU; mean, p95, peak) with a timeline plot each.
Every table names the machine and software it was measured on. Whether two sets of runs differ is
`speedlab compare`'s question.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from speedlab import fingerprint, record, results, stats, status
from speedlab.errors import SpeedlabError
from speedlab.fsutil import atomic_write_bytes, atomic_write_text
from speedlab.report import plots
from speedlab.report.html import to_html
from speedlab.tables import csv_text, markdown

# Parity runs and resource timelines in a report: the latest few, or the report would grow with every run.
REPORT_LATEST = 6


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m speedlab report", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", help="run directories or folders holding them (default: artifacts/)")
    parser.add_argument("--out", help="report directory (default: artifacts/report)")
    parser.add_argument("--html", action="store_true", help="also write report.html: one self-contained file")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"), help=argparse.SUPPRESS)  # moved to `compare`
    args = parser.parse_args(list(argv))
    if args.compare:
        raise SpeedlabError("report --compare is now its own command, with significance and an exit code for CI: "
                            f"python -m speedlab compare {args.compare[0]} {args.compare[1]}")  # fmt: skip
    roots = [Path(r) for r in args.runs] or [record.artifacts_root()]
    everything = results.collect(roots, finished_only=False)
    finished = [r for r in everything if r["status"] == status.OK]
    out = Path(args.out) if args.out else record.report_dir()
    unfinished = [r for r in everything if r["status"] not in (status.OK, status.SKIPPED)]
    path = write(finished, out, unfinished, html=args.html)
    extra = f", {path.with_suffix('.html').name}" if args.html else ""
    print(f"report: {path}{extra} and a CSV per table ({len(finished)} result.json files)")
    return 0


def training_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per fingerprint (`speedlab.fingerprint`: the config that changes speed, the machine and versions,
    the commit): the median over its runs, so runs that differ in anything that changes speed never merge. Each
    row's speed-up is taken against the Vanilla row of the same workload (its fingerprint less the levers): None,
    with `no_speedup` saying why, when there is none."""
    groups: dict[str, list[dict]] = defaultdict(list)
    prints: dict[str, fingerprint.Fingerprint] = {}
    for r in runs:
        if r["kind"] == "train" and r.get("mean_epoch_time_s"):
            fp = fingerprint.of_train(r)
            groups[fp.key()].append(r)
            prints[fp.key()] = fp
    rows = []
    for key, group in groups.items():

        def med(name: str, group: list[dict] = group) -> float | None:
            values = [x[name] for x in group if x.get(name) is not None]
            return stats.median(values) if values else None

        last, fp = group[-1], prints[key]
        metric = last.get("metric", "val_acc")
        amp = fp.config.get("amp.enabled")
        rows.append({
            "changes": last["changes"], "family": last.get("family", "convnext"), "params": last["params"],
            "data": (last.get("data") or {}).get("name"), "batch_size": fp.config.get("trainer.batch_size"),
            "epochs": fp.config.get("trainer.epochs"), "precision": fp.config.get("amp.dtype") if amp else "fp32",
            "machine": fp.env["machine"], "commit": fp.commit, "runs": len(group), "fingerprint": fp,
            "epoch_time_s": med("mean_epoch_time_s"), "metric": metric, "val": med(f"final_{metric}"),
            "images_per_s": med("mean_images_per_s"), "compile_time_s": med("compile_time_s"),
            "peak_memory_bytes": med("peak_memory_bytes"), "achieved": med("mean_achieved_flops_per_s"),
            "efficiency": med("efficiency"), "yardstick_precision": last.get("yardstick_precision"),
            "env": results.machine(last),
        })  # fmt: skip
    for row in rows:
        _speedup(row, rows)
    return sorted(rows, key=lambda r: (r["params"], r["batch_size"] or 0,
                                       -(r["speedup"] or 0) if r["changes"] != "Vanilla" else -99))  # fmt: skip


def _speedup(row: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Set the row's speed-up against the Vanilla of its own workload, or say why there is none."""
    row["speedup"], row["no_speedup"] = None, None
    workload = row["fingerprint"].workload_key()
    base = next((b for b in rows if b["changes"] == "Vanilla" and b["fingerprint"].workload_key() == workload), None)
    if base is not None:
        row["speedup"] = base["epoch_time_s"] / row["epoch_time_s"]
        return
    vanillas = [b for b in rows if b["changes"] == "Vanilla" and b["family"] == row["family"]]
    if not vanillas:
        row["no_speedup"] = "no Vanilla run of this model"
        return
    nearest = min(vanillas, key=lambda b: len(_workload_differences(b, row)))
    row["no_speedup"] = "the Vanilla runs differ in " + "; ".join(_workload_differences(nearest, row))


def _workload_differences(base: dict[str, Any], row: dict[str, Any]) -> list[str]:
    found = fingerprint.differences(base["fingerprint"].workload(), row["fingerprint"].workload())
    return found or ["nothing that changes speed (same workload)"]


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


class Tables:
    """The report's tables: each one rendered as markdown for report.md and kept as CSV (`table-<name>.csv`)."""

    def __init__(self) -> None:
        self.csv: dict[str, str] = {}

    def add(self, name: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
        self.csv[name] = csv_text(header, rows)
        return markdown(header, rows)

    def write(self, out: Path) -> None:
        for name, text in self.csv.items():
            atomic_write_text(out / f"table-{name}.csv", text)


def training_table(rows: list[dict[str, Any]], tables: Tables | None = None) -> str:
    header = ["Changes", "Batch", "Precision", "Train epoch time", "Val accuracy", "Speed-up vs vanilla", "Images/s",
              "Achieved", "Of matmul peak", "Compile time", "Peak memory", "Model", "Machine", "Runs"]  # fmt: skip
    cells = []
    for r in rows:
        speedup = f"{r['speedup']:.2f}×" if r["speedup"] else "–"
        memory = f"{r['peak_memory_bytes'] / 2**30:.2f} GiB" if r["peak_memory_bytes"] else "–"
        compile_time = f"{r['compile_time_s']:.1f} s" if r["compile_time_s"] is not None else "–"
        epochs = f"{r['epochs']} epoch{'' if r['epochs'] == 1 else 's'}"
        model = f"{r['family']} ({r['params']:,} parameters) on {r['data']}, {epochs}"
        cells.append([r["changes"], str(r["batch_size"]), r["precision"], _seconds(r["epoch_time_s"]), _val_text(r),
                      speedup, f"{r['images_per_s'] or 0:,.0f}", *_achieved(r), compile_time, memory, model,
                      f"{r['machine']}, {r['commit']}", str(r["runs"])])  # fmt: skip
    lines = [(tables or Tables()).add("training", header, cells)]
    missing = [r for r in rows if r["speedup"] is None]
    if missing:
        lines += ["", "No speed-up where no Vanilla ran the same workload (model, data, batch size, epochs, machine, "
                      "versions, commit; train `+exp=vanilla` with the same settings to get one):"]  # fmt: skip
        lines += [f"- {r['changes']} (batch {r['batch_size']}): {r['no_speedup']}" for r in missing]
    return "\n".join(lines)


def inference_table(bench: dict[str, Any], tables: Tables | None = None, name: str = "inference") -> str:
    """The reference's shape (Changes | Time BS 64 | Time BS 1 | Val accuracy), p50 per backend and precision."""
    latency = [r for r in bench["rows"] if r.get("concurrency", 1) == 1]  # one request at a time
    cells = {(r["backend"], r["precision"], r["batch_size"]): r for r in latency if r["status"] == "ok"}
    sizes = sorted({r["batch_size"] for r in latency}, reverse=True)
    rows = []
    for backend, precision in dict.fromkeys((r["backend"], r["precision"]) for r in latency):
        times = [f"{cells[(backend, precision, s)]['p50_ms']:.2f} ms" if (backend, precision, s) in cells else "–"
                 for s in sizes]  # fmt: skip
        rows.append([f"{backend} ({precision})", *times, "–"])
    return (tables or Tables()).add(name, ["Changes", *(f"Time BS {s}" for s in sizes), "Val accuracy"], rows)


def percentile_table(bench: dict[str, Any], tables: Tables | None = None, name: str = "percentiles") -> str:
    """Every cell's percentiles; one that too few calls cannot resolve is marked `*` (it is nearly the maximum).
    A sweep that kept several requests in flight (`bench.concurrency`) has an "In flight" column."""
    flight = any(r.get("concurrency", 1) > 1 for r in bench["rows"])
    header = ["Backend", "Precision", "Batch", *(["In flight"] if flight else []), "Status", "n", "p50", "p90", "p95",
              "p99", "max", "Images/s", "Setup", "Efficiency"]  # fmt: skip
    rows, flagged = [], False
    for r in bench["rows"]:
        head = [r["backend"], r["precision"], str(r["batch_size"]), *([str(r.get("concurrency", 1))] if flight else [])]
        if r["status"] != status.OK:
            rows.append([*head, f"{r['status']}: {r['reason']}", *[""] * 9])
            continue
        eff = f"{r['efficiency']:.1%}" if r.get("efficiency") is not None else "–"
        too_few = set(r.get("too_few_for") or [])
        flagged |= bool(too_few)
        times = [f"{r[f'{k}_ms']:.3f} ms" + ("*" if k in too_few else "") if r.get(f"{k}_ms") is not None else "–"
                 for k in ("p50", "p90", "p95", "p99", "max")]  # fmt: skip
        rows.append([*head, "ok", f"{r['n']:.0f}", *times, f"{r['throughput_per_s']:,.0f}", f"{r['setup_s']:.2f} s",
                     eff])  # fmt: skip
    text = (tables or Tables()).add(name, header, rows)
    if flagged:
        text += "\n\n\\* too few calls for this percentile to mean more than the maximum (raise `bench.min_time_s`)."
    return text


def write(runs: list[dict[str, Any]], out: Path, unfinished: Sequence[dict[str, Any]] = (), html: bool = False) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    tables = Tables()
    parts = ["# speedlab report", ""]
    if unfinished:
        parts += ["## Runs that did not finish", "", tables.add("unfinished", *unfinished_table(unfinished)), ""]
    train = training_rows(runs)
    if train:
        machines = sorted({r["env"] for r in train})
        parts += ["## Training", "", f"Measured on: {'; and '.join(machines)}.", "", training_table(train, tables), ""]
        parts += plots.training(train, out)
    for i, bench in enumerate([r for r in runs if r["kind"] == "bench"][-3:], start=1):  # the latest few sweeps
        title = f"## Inference: {bench.get('name')} ({_params(bench)}, input {bench['input_shape'][1:]})"
        parts += [title, "", f"Measured on: {results.machine(bench)}; {bench['_dir']}.", ""]
        parts += [inference_table(bench, tables, f"inference-{i}"), "",
                  percentile_table(bench, tables, f"percentiles-{i}"), ""]  # fmt: skip
        parts += plots.inference(bench, out)
        parts += plots.concurrency(bench, out)
        parts += plots.latency_distribution(bench, out)
    activations = [r for r in runs if r["kind"] == "bench_activations"]
    if activations:
        parts += ["## Activations", "", f"Measured on: {results.machine(activations[-1])}.", ""]
        parts += plots.activations(activations[-1], out)
    parity = [r for r in runs if r["kind"] == "parity"][-REPORT_LATEST:]
    if parity:
        parts += ["## Parity runs", "", tables.add("parity", *parity_table(parity)), ""]
        for i, run in enumerate(parity):
            parts += _copy_plot(Path(run.get("plot", "")), out, f"parity-{i + 1}.png")
    monitored = [r for r in runs if Path(r.get("resources", {}).get("timeline", "")).is_file()][-REPORT_LATEST:]
    if monitored:
        parts += ["## Resources", "", tables.add("resources", *resources_table(monitored)), ""]
        for i, run in enumerate(monitored):
            parts += plots.resources(run, out, f"resources-{i + 1}.png")
    if len(parts) == 2:
        parts.append("No finished train or bench runs found.")
    text = "\n".join(parts) + "\n"
    path = out / "report.md"
    atomic_write_text(path, text)
    tables.write(out)
    if html:
        atomic_write_text(out / "report.html", to_html(text, out))
    return path


def _params(result: dict[str, Any]) -> str:
    return f"{result['params']:,} parameters" if result.get("params") else "a model file"


def unfinished_table(runs: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Failed, interrupted and crashed runs: what they kept (finished epochs) and why they stopped."""
    rows = []
    for r in runs:
        why = r.get("reason") or ("its process is gone: killed, or the machine went down"
                                  if r["status"] == record.CRASHED else "")  # fmt: skip
        epochs = len(r.get("epochs") or []) if r["kind"] == "train" else "–"
        rows.append([r["_dir"], r["kind"], r["status"], str(epochs), (str(why).splitlines() or [""])[0][:120]])
    return ["Run", "Kind", "Status", "Finished epochs", "Why"], rows


def parity_table(runs: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    rows = []
    for i, r in enumerate(runs, start=1):
        sides = r.get("sides", {})
        w = r.get("final_weights", {})
        weights = f"{w['relative']:.3g}" if w.get("relative") is not None else "not comparable"
        rows.append([str(i), sides.get("a", {}).get("changes", "?"), sides.get("b", {}).get("changes", "?"),
                     str(r.get("steps")), r.get("verdict"), r.get("why"), f"{r.get('max_rel_difference', 0):.3g}",
                     weights])  # fmt: skip
    return ["#", "A", "B", "Steps", "Verdict", "Why", "Max rel. difference", "Final weights rel. diff"], rows


def resources_table(runs: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
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
    return header, rows


def _copy_plot(source: Path, out: Path, name: str) -> list[str]:
    if not source.is_file():
        return []
    atomic_write_bytes(out / name, source.read_bytes())
    return [f"![{name}]({name})", ""]
