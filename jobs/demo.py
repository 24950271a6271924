"""``make demo``: the whole pipeline on one machine, no data and no GPU needed.

1. generate the synthetic world in the real dataset formats;
2. pseudo masks for its Objects365-style boxes (Ray Data; the ``box`` backend until a trained
   teacher exists), with the manifest summary and the IoU report against the hidden true masks;
3. train ``tiny()`` with the STT schedule on an embedded local Ray (Ray Train, 2 CPU workers);
4. evaluate the final checkpoint open-vocabulary on the synthetic ADE20K-style panoptic set
   (PQ) and LVIS-style set (mask AP), and print the report tables.

Every step is the real job's own entry point, run in this process so they share one Ray.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def _banner(text: str) -> None:
    print(f"\n{'=' * 78}\n== {text}\n{'=' * 78}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="demo_out", help="everything goes here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", choices=["small", "medium"], default="small", help="synthetic world size")
    p.add_argument("--epochs", type=int, default=12, help="training epochs (tiny preset; the paper trains 12)")
    p.add_argument("--workers", type=int, default=2, help="Ray Train workers")
    p.add_argument("--skip-train", action="store_true", help="stop after the pseudo-mask stage")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    t0 = time.time()

    _banner("1/4 synthetic world")
    from vloss.data.synthetic import format_summary, generate_world, load_world

    world = os.path.join(out, "world")
    if os.path.exists(os.path.join(world, "world.json")):
        print(f"reusing {world} (delete it to regenerate)")
    else:
        summary = generate_world(world, args.seed, size_preset=args.size)
        print(format_summary(summary))
    paths = load_world(world)["paths"]

    _banner("2/4 pseudo masks (Ray Data, box backend)")
    from jobs import pseudo_masks
    from pipelines.common.ray_env import ensure_ray

    ensure_ray(2)
    pm_out = os.path.join(out, "pseudo_masks")
    o365 = {k: str(v) for k, v in paths["objects365"].items()}
    pseudo_masks.main(["--annotations", o365["train_json"], "--images", o365["train_images"], "--out", pm_out,
                       "--backend", "box", "--set", "rows_per_shard=32", "--eval-truth", o365["train_truth_masks"]])
    if args.skip_train:
        return 0

    _banner("3/4 training tiny() with the STT schedule (Ray Train)")
    from jobs import train

    run_dir = os.path.join(out, "run")
    train.main(["--config", "tiny", "--data", world, "--pseudo-masks", pm_out, "--out", run_dir,
                "--workers", str(args.workers), "--set", f"train.epochs={args.epochs}",
                "--set", "cluster.rows_per_shard=32"])

    _banner("4/4 open-vocabulary evaluation (ADE20K-style PQ, LVIS-style mask AP)")
    from jobs import evaluate

    ckpt = _last_checkpoint(run_dir)
    for task in ("ade20k_panoptic", "lvis"):
        evaluate.main(["--task", task, "--checkpoint", ckpt, "--data", world,
                       "--out", os.path.join(out, "eval", task)])
    print(f"\ndemo finished in {time.time() - t0:.0f} s; everything is under {out}")
    return 0


def _last_checkpoint(run_dir: str) -> str:
    import json

    with open(os.path.join(run_dir, "result.json")) as f:
        ckpt = json.load(f)["checkpoint"]
    if not ckpt:
        raise RuntimeError(f"training in {run_dir} reported no checkpoint")
    return ckpt


if __name__ == "__main__":
    sys.exit(main())
