"""Command line: ``python -m vloss.model summary --preset paper [--json] [--set key=value ...]``.

Prints parameter counts per component (backbone, encoder, decoder, text, other) and the total.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from vloss.config import PRESETS, preset
from vloss.config_io import apply_overrides


def summary(preset_name: str, overrides: list[str]) -> dict[str, int]:
    """Build the preset's model (random init, no weights read) and count its parameters."""
    from vloss.model.network import VLOSS

    cfg = apply_overrides(preset(preset_name), overrides)
    cfg.model.backbone.weights = None
    cfg.model.text.weights = None
    with torch.device("meta"):
        model = VLOSS(cfg.model)
    return model.component_parameters()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vloss.model", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("summary", help="parameter counts per component")
    p.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. decoder.num_layers=6 (repeatable)")
    p.add_argument("--json", action="store_true", help="print a JSON object (with a 'total' key)")
    args = parser.parse_args(argv)
    counts = summary(args.preset, args.overrides)
    if args.json:
        print(json.dumps(counts))
    else:
        print(f"preset {args.preset}")
        for name, n in counts.items():
            print(f"  {name:<9} {n:>12,d}  ({n / 1e6:7.2f} M)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
