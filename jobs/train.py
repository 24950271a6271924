"""Train VLOSS with Ray Train.

On a cluster::

    ray job submit -- python jobs/train.py --config paper --data DATA_ROOT \\
        --workers 8 --gpus-per-worker 1 --storage-path s3://bucket/vloss-runs --out runs/vloss

On one machine (embedded local Ray, synthetic world, ``tiny`` preset)::

    python jobs/train.py --out runs/trial --max-steps 6 --workers 2
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pipelines.train_config import resolve  # noqa: E402
from pipelines.ray_env import ensure_ray  # noqa: E402
from pipelines.train_job import ClusterSettings, prepare_shards, run_training  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="preset: paper | baseline | tiny (default: tiny without --data)")
    p.add_argument("--data", default=None, help="data root in the layouts of docs/DATA_LAYOUT.md "
                                                "(default: generate the synthetic world)")
    p.add_argument("--shards", default=None, help="existing training-shard root (skips data preparation)")
    p.add_argument("--pseudo-masks", default=None, help="output dir of jobs/pseudo_masks.py for the boxes")
    p.add_argument("--out", default="runs/vloss", help="run directory (config, metrics, results)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--gpus-per-worker", type=float, default=0.0)
    p.add_argument("--cpus-per-worker", type=float, default=None,
                   help="default: 0.5 on CPU (leaves CPUs for Ray Data), 4 with GPUs")
    p.add_argument("--schedule", choices=["stt", "mix", "pretrain", "panoptic"], default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--max-steps", type=int, default=None, help="stop after N steps (trials)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. model.decoder.num_layers=6 (repeatable)")
    p.add_argument("--resume", default=None, help="checkpoint directory to resume from")
    p.add_argument("--max-failures", type=int, default=1)
    p.add_argument("--storage-path", default=None, help="Ray Train storage (shared dir or s3://...)")
    p.add_argument("--rows-per-shard", type=int, default=256)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    preset = args.config or ("tiny" if args.data is None and args.shards is None else "paper")
    overrides = list(args.set)
    if args.schedule:
        overrides.append(f"train.schedule={args.schedule}")
    if args.epochs:
        overrides.append(f"train.epochs={args.epochs}")
    if args.max_steps is not None:
        overrides.append(f"train.max_steps={args.max_steps}")
    job = resolve(preset, overrides)
    if args.max_steps and preset == "tiny":
        # a short trial on the synthetic world: two steps per dense sub-epoch, so that a
        # handful of steps visits detection, captions and panoptic
        job.train.detection_images = job.train.detection_images or 2 * job.train.dense_batch_size * args.workers
        job.train.panoptic_images = job.train.panoptic_images or 2 * job.train.dense_batch_size * args.workers
    gpus = args.gpus_per_worker
    cluster = ClusterSettings(workers=args.workers, gpus_per_worker=gpus,
                              cpus_per_worker=args.cpus_per_worker or (4.0 if gpus else 0.5),
                              max_failures=args.max_failures, storage_path=args.storage_path)
    out = os.path.abspath(args.out)
    ensure_ray()
    shard_root = args.shards or prepare_shards(args.data, out if args.data is None else os.path.join(out, "data"),
                                               args.pseudo_masks, args.rows_per_shard, job.seed)
    result = run_training(job, shard_root, out, cluster, resume_from=args.resume)
    print(f"[train] run directory: {out}")
    print(f"[train] last checkpoint: {result.checkpoint.path if result.checkpoint else None}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
