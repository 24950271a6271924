"""Standalone scorers: ``python -m vloss.eval {pq,lvis,coco} ...``.

Each prints one JSON object on stdout (and writes it to ``--out`` when given). Values
are fractions in [0, 1]; ``null`` marks an undefined average. Malformed input exits with
status 2 and a one-line message naming the file, the record and the field.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vloss.data.errors import DataFormatError


def _positive(text: str) -> int:
    """argparse type: an integer >= 1 (a one-line usage error otherwise, exit status 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


class _OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line on stderr and exit status 2 (no usage block)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser (one sub-command per scorer)."""
    parser = _OneLineParser(prog="python -m vloss.eval", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)

    pq = sub.add_parser("pq", help="panoptic quality (COCO panoptic format)")
    pq.add_argument("--gt-json", required=True, type=Path)
    pq.add_argument("--gt-dir", required=True, type=Path)
    pq.add_argument("--pred-json", required=True, type=Path)
    pq.add_argument("--pred-dir", required=True, type=Path)
    pq.add_argument("--workers", type=_positive, default=None, help="threads or processes (default min(4, cpus))")
    pq.add_argument("--executor", choices=("thread", "process"), default="thread",
                    help="score images in threads (default) or in spawned processes (for many cores)")
    pq.add_argument("--crowd-rule", choices=("official", "all"), default="official",
                    help="crowd regions that absorb predictions: the last crowd segment of each class in "
                         "segments_info, as the COCO panoptic API (official, default), or every one (all)")
    pq.add_argument("--out", type=Path, default=None, help="also write the metrics JSON here")

    lv = sub.add_parser("lvis", help="LVIS mask AP (lvis-api)")
    lv.add_argument("--gt-json", required=True, type=Path)
    lv.add_argument("--results", required=True, type=Path)
    lv.add_argument("--max-dets", type=_positive, default=300,
                    help="keep the top-N results per image; the rest are dropped and counted")
    lv.add_argument("--out", type=Path, default=None)

    co = sub.add_parser("coco", help="COCO mask AP (pycocotools)")
    co.add_argument("--gt-json", required=True, type=Path)
    co.add_argument("--results", required=True, type=Path)
    co.add_argument("--max-dets", type=_positive, default=100)
    co.add_argument("--out", type=Path, default=None)
    return parser


def run(args: argparse.Namespace) -> dict:
    """Run the scorer ``args.command`` names and return its metrics."""
    if args.command == "pq":
        from vloss.eval.pq import pq_compute
        return pq_compute(args.gt_json, args.gt_dir, args.pred_json, args.pred_dir, workers=args.workers,
                          crowd_rule=args.crowd_rule, executor=args.executor)
    if args.command == "lvis":
        from vloss.eval.lvis_eval import lvis_mask_ap
        return lvis_mask_ap(args.gt_json, args.results, max_dets=args.max_dets)
    from vloss.eval.coco_eval import coco_mask_ap
    return coco_mask_ap(args.gt_json, args.results, max_dets=args.max_dets)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        metrics = run(args)
    except (DataFormatError, ValueError, OSError) as e:  # bad input: one line naming it, never a traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = json.dumps(metrics, indent=2, sort_keys=False)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
