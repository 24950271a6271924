"""Command line: ``python -m vloss.data.prepare DATASET --src DOWNLOAD_ROOT --out DATA_ROOT [options]``.

DATASET is one of ``ade20k``, ``coco``, ``objects365``, ``lvis``; ``--split`` (repeatable) picks
splits (default: every split the recipes use). Exit status 0 when done, 1 on bad input (the
message names the file and what is wrong), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from vloss.data.errors import DataFormatError
from vloss.data.prepare import DATASETS
from vloss.data.prepare.common import LINK_MODES, PrepareError


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the command."""
    ap = argparse.ArgumentParser(
        prog="python -m vloss.data.prepare",
        description="Prepare a dataset from its official downloads into the layout of docs/DATA_LAYOUT.md.")
    ap.add_argument("dataset", choices=list(DATASETS))
    ap.add_argument("--src", required=True, help="where the official downloads were unpacked")
    ap.add_argument("--out", required=True, help="the data root (the folder the jobs' --data names)")
    ap.add_argument("--split", action="append", default=None,
                    help="a split to prepare (repeatable); ade20k: val, train; coco: train, val; "
                         "objects365: train; lvis: val (default: all of them)")
    ap.add_argument("--link", choices=LINK_MODES, default="symlink",
                    help="how downloaded files are placed: symlink (default; folders as one link where the layout "
                         "is the download's), hardlink or copy (file by file)")
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                    help="ade20k: processes converting images (default: CPUs, at most 8)")
    ap.add_argument("--coco", default=None, help="lvis: the COCO 2017 image root (default: --src or --src/coco)")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    ap = build_parser()
    args = ap.parse_args(argv)
    module, splits = DATASETS[args.dataset]
    chosen = tuple(args.split) if args.split else splits
    bad = [s for s in chosen if s not in splits]
    if bad:
        ap.error(f"{args.dataset} has no split {bad[0]!r}; choose from {', '.join(splits)}")
    if args.workers < 1:
        ap.error("--workers must be at least 1")
    if args.dataset != "lvis" and args.coco is not None:
        ap.error("--coco is an option of lvis only")
    if not os.path.isdir(args.src):
        print(f"python -m vloss.data.prepare: error: --src {args.src} is not a folder", file=sys.stderr)
        return 1
    kwargs: dict = {"link": args.link}
    if args.dataset == "ade20k":
        kwargs["workers"] = args.workers
    if args.dataset == "lvis":
        kwargs["coco"] = args.coco
    try:
        importlib.import_module(module).prepare(args.src, args.out, chosen, **kwargs)
    except (PrepareError, DataFormatError, FileNotFoundError) as e:
        sys.stdout.flush()
        print(f"python -m vloss.data.prepare {args.dataset}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
