"""`python -m speedlab data ...`: download TinyImageNet, write small fake datasets in the real formats (synth), and
prepare a source's decoded cache ahead of training."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from speedlab import config, record
from speedlab.data.sources.tinyimagenet import TinyImageNetCfg

SUBCOMMANDS = ("download", "prepare", "synth")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m speedlab data", description=__doc__)
    sub = parser.add_subparsers(dest="action", metavar="{download,prepare,synth}")
    dl = sub.add_parser("download", help="fetch TinyImageNet (or unpack a local zip / URL) into the data root")
    dl.add_argument("source", nargs="?", help="URL or local zip (default: the official TinyImageNet URL)")
    dl.add_argument("--root", help="folder to unpack into (default: data.root, i.e. $SPEEDLAB_DATA or data/)")
    dl.add_argument("--md5", help="expected MD5 of the zip (the official zip's is built in)")
    dl.add_argument("--timeout", type=float, default=60.0, help="network timeout in seconds (default 60)")
    sub.add_parser(
        "prepare",
        help="build the decoded uint8 cache for the configured dataset; takes Hydra overrides (data.root=...)",
        add_help=False,
    )
    synth = sub.add_parser(
        "synth", help="write a small fake dataset in a real format: TinyImageNet (JPEGs) or MNIST (IDX files)"
    )
    synth.add_argument("--kind", choices=list(SYNTH), default="tinyimagenet", help="the format (tinyimagenet)")
    synth.add_argument("--out", required=True, help="folder to write into (tiny-imagenet-200/ or the IDX files)")
    synth.add_argument("--classes", type=int, default=10, help="tinyimagenet: number of classes")
    synth.add_argument("--train-per-class", type=int, default=20, help="tinyimagenet: training images per class")
    synth.add_argument("--val-per-class", type=int, default=5, help="tinyimagenet: val images per class")
    synth.add_argument("--train", type=int, default=600, help="mnist: training images")
    synth.add_argument("--val", type=int, default=100, help="mnist: test (val) images")
    synth.add_argument("--plain", action="store_true", help="mnist: plain IDX files instead of .gz")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--zip", action="store_true", help="tinyimagenet: also write tiny-imagenet-200.zip beside it")
    return parser


def prepare(ctx: config.RunContext) -> int:
    """Build (or validate) what the source builds on first use (the decoded cache) and record what was done."""
    from speedlab.data.build import prepare as prepare_source

    with record.recording(ctx.run_dir, "data", ctx.resolved, sweep=ctx.sweep) as rec:
        t0 = time.perf_counter()
        info = prepare_source(ctx.cfg.data)
        rec["data"] = {**info, "skipped_corrupt": info.get("skipped_in_cache", 0)}
        rec["prepare_time_s"] = round(time.perf_counter() - t0, 3)
    print(f"\n{'split':<6} {'images':>8} {'skipped':>8} {'cache':>7}  path")
    for split, s in info.get("splits", {}).items():
        print(f"{split:<6} {s['images']:>8} {s['skipped']:>8} {'built' if s['built'] else 'reused':>7}  {s['path']}")
    print(f"result: {rec.path}")
    return 0


def main(argv: Sequence[str]) -> int:
    """`data download` and `data synth` (`data prepare` is a Hydra application: speedlab/entry/data_prepare.py)."""
    args = _parser().parse_args(argv)
    if args.action is None:
        _parser().print_help()
        return 2
    if args.action == "download":
        from speedlab.data.download import download

        root = args.root or TinyImageNetCfg().root
        path = download(args.source, root, md5=args.md5, timeout=args.timeout)
        print(f"TinyImageNet is ready at {path}; next: python -m speedlab data prepare data.root={root}")
        return 0
    return SYNTH[args.kind](args)


def _synth_mnist(args: argparse.Namespace) -> int:
    from speedlab.data.fake import write_fake_mnist

    files = write_fake_mnist(args.out, train=args.train, val=args.val, seed=args.seed, gz=not args.plain)
    print("wrote " + ", ".join(str(f) for f in files))
    print(f"next: python -m speedlab train model=lenet5 data=mnist data.root={args.out}")
    return 0


def _synth_tinyimagenet(args: argparse.Namespace) -> int:
    from speedlab.data.fake import write_fake_tinyimagenet

    path = write_fake_tinyimagenet(
        args.out,
        classes=args.classes,
        train_per_class=args.train_per_class,
        val_per_class=args.val_per_class,
        seed=args.seed,
        make_zip=args.zip,
    )
    print(f"wrote {path}" + (f" and {path}.zip" if args.zip else ""))
    return 0


# The formats `data synth` writes, and their writers.
SYNTH = {"tinyimagenet": _synth_tinyimagenet, "mnist": _synth_mnist}
