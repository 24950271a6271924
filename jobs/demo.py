"""``make demo``: the whole pipeline on one machine, no data and no GPU needed.

1. generate the synthetic world in the real dataset formats;
2. pseudo masks for its Objects365-style boxes (Ray Data; the ``box`` backend until a trained
   teacher exists), with the IoU report against the hidden true masks;
3. pretrain the ``tiny`` image and text towers CLIP-style on the world's caption corpus (Ray
   Train; the paper starts from ImageNet Swin-T and CLIP text weights, Sec. 4.1), written as a
   timm backbone file and an open_clip text file;
4. train the ``tiny`` network from those towers with the STT recipe on an embedded local Ray (Ray Train), validating
   PQ on the COCO-style val split every 3 epochs and keeping the best checkpoint;
5. evaluate that checkpoint open-vocabulary on the COCO-style, ADE20K-style (PQ) and LVIS-style
   (mask AP) val sets with the evaluation's real settings, split into classes seen by training and
   classes no training annotation names, and write ``OUT/summary.json``.

Every step is the real job's own entry point, run in this process so they share one Ray.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from jobs.demo_steps import (
    DEMO_TRAIN,
    DEMO_WORLD,
    best_checkpoint,
    evaluate_all,
    format_summary_table,
    prepare_pseudo_masks,
    prepare_towers,
    prepare_world,
    stage,
    summarize,
)


def _banner(text: str) -> None:
    print(f"\n{'=' * 78}\n== {text}\n{'=' * 78}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m jobs.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="demo_out", help="everything goes here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", choices=["small", "medium"], default=DEMO_WORLD, help="synthetic world size")
    p.add_argument("--workers", type=int, default=2, help="Ray Train workers")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra training overrides, after the demo's own")
    p.add_argument("--skip-train", action="store_true", help="stop after the pseudo-mask stage")
    p.add_argument("--verbose", action="store_true", help="show Ray's own output on the console")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    verbose = ["--verbose"] if args.verbose else []
    t0, times = time.time(), {}

    _banner("1/5 synthetic world")
    world = prepare_world(out, args.seed, args.size, times)
    _banner("2/5 pseudo masks (Ray Data, box backend)")
    pm_out = prepare_pseudo_masks(out, world, times, verbose)
    if args.skip_train:
        return 0
    _banner("3/5 pretraining the tiny image and text towers CLIP-style on the caption corpus (Ray Train)")
    towers = prepare_towers(out, world, args.workers, times, verbose)

    _banner("4/5 training the tiny network from the pretrained towers, STT recipe (Ray Train, validation "
            "every 3 epochs)")
    from jobs import train

    run_dir = os.path.join(out, "run")
    weights = [f"model.backbone.weights={towers}/backbone.bin", f"model.text.weights={towers}/text.bin"]
    overrides = [x for o in DEMO_TRAIN + weights + list(args.overrides) for x in ("--set", o)]
    code = stage("train", times, train.main, ["--config", "tiny", "--data", world, "--pseudo-masks", pm_out,
                                               "--out", run_dir, "--workers", str(args.workers),
                                               "--extra-image-text", *overrides, *verbose])
    if code:
        print(f"training failed (exit {code}); see the lines above and {run_dir}", file=sys.stderr)
        return code

    _banner("5/5 open-vocabulary evaluation (COCO-, ADE20K- and LVIS-style val, the real evaluation settings)")
    ckpt = best_checkpoint(run_dir)
    evaluate_all(ckpt, world, out, times, verbose)
    times["total"] = round(time.time() - t0, 1)
    summary = summarize(out, world, ckpt, times)
    (Path(out) / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    from pipelines.demo.page import write_page

    page = write_page(out, world, summary)
    print(format_summary_table(summary))
    print(f"\ndemo finished in {times['total']:.0f} s; summary: {Path(out) / 'summary.json'}; "
          f"overlays: {Path(out) / 'eval'}/*/overlays/; open {page} in a browser (offline)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
