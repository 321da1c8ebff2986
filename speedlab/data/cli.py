"""`python -m speedlab data ...`: download, synth and prepare (the decoded cache) datasets."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from speedlab import config, record
from speedlab.errors import SpeedlabError

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
    synth = sub.add_parser("synth", help="write a small fake TinyImageNet (real JPEGs, official layout)")
    synth.add_argument("--out", required=True, help="folder to create tiny-imagenet-200/ in")
    synth.add_argument("--classes", type=int, default=10)
    synth.add_argument("--train-per-class", type=int, default=20)
    synth.add_argument("--val-per-class", type=int, default=5)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--zip", action="store_true", help="also write tiny-imagenet-200.zip beside it")
    return parser


def prepare(ctx: config.RunContext) -> int:
    """Build (or validate) the decoded cache of both splits and record what was done."""
    from speedlab.data.build import decoded_arrays

    cfg = ctx.cfg.data
    if cfg.name == "synthetic":
        raise SpeedlabError("data=synthetic is generated in memory and has no cache to prepare")
    with record.recording(ctx.run_dir, "data", ctx.resolved) as rec:
        t0 = time.perf_counter()
        decoded, classes, info = decoded_arrays(cfg)
        rec["data"] = {**info, "num_classes": len(classes), "skipped_corrupt": info["skipped_in_cache"]}
        rec["prepare_time_s"] = round(time.perf_counter() - t0, 3)
        rows = [
            (split, len(d.labels), len(d.skipped), "built" if d.built else "reused", d.path)
            for split, d in decoded.items()
        ]
    print(f"\n{'split':<6} {'images':>8} {'skipped':>8} {'cache':>7}  path")
    for split, n, skipped, how, path in rows:
        print(f"{split:<6} {n:>8} {skipped:>8} {how:>7}  {path}")
    print(f"result: {rec.path}")
    return 0


def main(argv: Sequence[str]) -> int:
    argv = list(argv)
    if argv and argv[0] == "prepare":  # the rest are Hydra overrides and flags
        config.run_hydra("data_prepare", argv[1:], prepare)
        return 0
    args = _parser().parse_args(argv)
    if args.action is None:
        _parser().print_help()
        return 2
    if args.action == "download":
        from speedlab.data.download import download

        root = args.root or config.compose("data_prepare").data.root
        path = download(args.source, root, md5=args.md5, timeout=args.timeout)
        print(f"TinyImageNet is ready at {path}; next: python -m speedlab data prepare data.root={root}")
        return 0
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
