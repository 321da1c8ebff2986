"""Benchmark the data lever: images/s of the decoded-cache + device-transform pipeline against the classic
per-image DataLoader pipeline, on a fake TinyImageNet of real JPEGs (64 px, batch 128 by default).

    python scripts/bench_data.py [--classes 200 --train-per-class 50 --batch-size 128 --epochs 3]

Both pipelines run the same augmentation recipe (random-resized-crop + flip + normalise) and produce the same
tensors for the model; the time to build the cache is reported on its own. Writes result.json (kind: bench_data)
in a run directory under artifacts/runs/ and prints a markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import torch

from speedlab import cli, config, record, stats, study
from speedlab.data.build import build_data, prepare
from speedlab.data.fake import write_fake_tinyimagenet


def images_per_second(loader, epochs: int, warmup_batches: int = 2) -> list[float]:
    """Throughput per epoch, excluding the first `warmup_batches` batches (worker start-up, first touches)."""
    rates = []
    for epoch in range(epochs):
        seen, t0 = 0, None
        for i, (x, _) in enumerate(loader.epoch(epoch)):
            if i == warmup_batches:
                seen, t0 = 0, time.perf_counter()
            seen += len(x)
        rates.append(seen / (time.perf_counter() - t0))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", help="an existing folder holding tiny-imagenet-200/ (default: write a fake one)")
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--train-per-class", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="classic pipeline's DataLoader workers")
    parser.add_argument("--epochs", type=int, default=3, help="timed passes per pipeline (median reported)")
    parser.add_argument("--study", default="data-pipeline", help="docs/results/<study>.md and .csv")
    parser.add_argument("--results-dir", type=Path, default=study.RESULTS_DIR, help="where the study's table goes")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        root = args.root
        if root is None:
            root = scratch
            t0 = time.perf_counter()
            write_fake_tinyimagenet(root, classes=args.classes, train_per_class=args.train_per_class, val_per_class=5)
            n_train = args.classes * args.train_per_class
            print(f"fake TinyImageNet: {n_train} train JPEGs in {time.perf_counter() - t0:.1f} s")
        overrides = [f"data.root={root}", f"data.resolution={args.resolution}", f"data.workers={args.workers}"]
        cfg = cli.compose("train", overrides)
        run_dir = record.new_run_dir("bench_data")
        with record.recording(run_dir, "bench_data", {"args": vars(args), **dataclasses.asdict(cfg)}) as rec:
            t0 = time.perf_counter()
            prepare(cfg.data)
            cache_build_s = time.perf_counter() - t0
            rows = []
            for pipeline in ("device", "loader"):
                cfg.data.feed = config.Feed[pipeline]
                data = build_data(cfg.data, seed=0, batch_size=args.batch_size, device="cpu")
                rates = images_per_second(data.train, args.epochs)
                rows.append({"pipeline": pipeline, "images_per_s": stats.median(rates), "epochs": rates})
                print(
                    f"{pipeline:>8}: {stats.median(rates):,.0f} images/s (per epoch: "
                    f"{', '.join(f'{r:,.0f}' for r in rates)})"
                )
            speedup = rows[0]["images_per_s"] / rows[1]["images_per_s"]
            rec["rows"], rec["cache_build_s"], rec["speedup_device_vs_loader"] = rows, cache_build_s, speedup
            rec["threads"] = torch.get_num_threads()

    loader_rate = rows[1]["images_per_s"]
    lines = [[f"data.feed={r['pipeline']}", f"{r['images_per_s']:,.0f}", f"{r['images_per_s'] / loader_rate:.1f}×"]
             for r in rows]  # fmt: skip
    md, _ = study.write(
        args.study, ["Feed", "Images/s", "vs loader"], lines, results_dir=args.results_dir,
        title=f"Data pipeline throughput, fake TinyImageNet ({args.classes * args.train_per_class} JPEGs, "
              f"{args.resolution} px, batch {args.batch_size})",
        machine=study.machine_of(rec.data),
        notes=[f"Cache build (decode every JPEG once): {cache_build_s:.1f} s."],
    )  # fmt: skip
    print("\n" + md.read_text() + f"\nresult: {rec.path}")


if __name__ == "__main__":
    main()
