"""Command line of the synthetic world::

    python -m vloss.data.synthetic --out DIR [--seed 0] [--size small|medium]
                                   [--n coco_panoptic_train=100 ...] [--overwrite]

writes the world (see :func:`vloss.data.synthetic.world.generate_world`) and prints its summary.
"""

from __future__ import annotations

import argparse
from dataclasses import fields

from vloss.data.synthetic.world import WorldSizes, format_summary, generate_world

DESCRIPTION = "The synthetic omni-supervised world: every dataset the system consumes, in its real layout."


def _parse_n(items: list[str]) -> dict[str, int]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not value.strip().lstrip("-").isdigit():
            raise argparse.ArgumentTypeError(f"--n expects SPLIT=INT, got {item!r}")
        out[key.strip()] = int(value)
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI entry point.

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status (0); bad arguments exit through argparse.
    """
    ap = argparse.ArgumentParser(prog="python -m vloss.data.synthetic", description=DESCRIPTION)
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", choices=["small", "medium"], default="small")
    ap.add_argument("--n", action="append", default=[], metavar="SPLIT=INT",
                    help=f"images of one split (repeatable); splits: "
                         f"{', '.join(f.name for f in fields(WorldSizes))}")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing world in --out")
    args = ap.parse_args(argv)
    try:
        sizes = WorldSizes.preset(args.size).override(_parse_n(args.n))
    except (ValueError, argparse.ArgumentTypeError) as e:
        ap.error(str(e))
    summary = generate_world(args.out, args.seed, sizes, args.size, args.overwrite)
    print(format_summary(summary))
    return 0
