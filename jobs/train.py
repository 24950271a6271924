"""Train VLOSS with Ray Train.

On a cluster::

    ray job submit --working-dir . -- python -m jobs.train --config paper --data DATA_ROOT \\
        --pseudo-masks s3://bucket/o365_pseudo --workers 8 --gpus-per-worker 1 \\
        --storage-path s3://bucket/vloss-runs --out runs/vloss

On one machine (embedded local Ray, synthetic world, ``tiny`` preset)::

    python -m jobs.train --out runs/trial --set train.max_steps=6

Every field of the recipe (:class:`vloss.config.TrainJobConfig`) is reachable with ``--set``
(``train.schedule=mix``, ``train.epochs=6``, ``optim.base_lr=1e-4``, ``model.decoder.num_layers=6``),
and so is the cluster section (``cluster.max_failures=3``, ``cluster.cpus_per_worker=8``,
``cluster.rows_per_shard=512``). The resolved config goes to ``OUT/config.json``.
"""

from __future__ import annotations

import argparse
import os
import sys

from pipelines.common.cli import add_set_argument, split_overrides
from pipelines.common.ray_env import ensure_ray
from pipelines.common.resources import default_cpus
from pipelines.train.config import ClusterConfig
from pipelines.train.job import prepare_shards, run_training
from vloss.config import TrainJobConfig, resolve
from vloss.config_io import apply_overrides


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, TrainJobConfig, ClusterConfig]:
    """Flags, the resolved recipe and the cluster section."""
    p = argparse.ArgumentParser(prog="python -m jobs.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, choices=["paper", "baseline", "tiny"],
                   help="preset (default: tiny without --data, paper with it)")
    p.add_argument("--data", default=None, help="data root in the layouts of docs/DATA_LAYOUT.md "
                                                "(default: generate the synthetic world)")
    p.add_argument("--shards", default=None, help="existing training-shard root (skips data preparation)")
    p.add_argument("--pseudo-masks", default=None, help="output dir of python -m jobs.pseudo_masks for the boxes")
    p.add_argument("--out", default="runs/vloss", help="run directory (config, metrics, results)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="a worker holding a GPU trains on CUDA")
    p.add_argument("--storage-path", default=None, help="Ray Train checkpoint storage (shared dir or s3://...)")
    p.add_argument("--resume", default=None, help="checkpoint directory to resume from")
    add_set_argument(p, "train.schedule=mix")
    a = p.parse_args(argv)
    preset = a.config or ("tiny" if a.data is None and a.shards is None else "paper")
    routed, recipe_overrides = split_overrides(a.overrides, ["cluster"])
    try:
        job = resolve(preset, recipe_overrides)
        cluster = ClusterConfig(workers=a.workers, gpus_per_worker=a.gpus_per_worker,
                                cpus_per_worker=default_cpus(a.gpus_per_worker), storage_path=a.storage_path)
        apply_overrides(cluster, routed["cluster"], default_section=None)
    except ValueError as exc:
        p.error(str(exc))
    if job.train.max_steps and preset == "tiny" and a.data is None and a.shards is None:
        # a short trial on the synthetic world: two steps per dense sub-epoch, so that a
        # handful of steps visits detection, captions and panoptic
        trial_rows = 2 * job.train.dense_batch_size * cluster.workers
        job.train.detection_images = job.train.detection_images or trial_rows
        job.train.panoptic_images = job.train.panoptic_images or trial_rows
    return a, job, cluster


def main(argv: list[str] | None = None) -> int:
    a, job, cluster = parse_args(argv)
    out = os.path.abspath(a.out)
    ensure_ray()
    shard_root = a.shards or prepare_shards(a.data, out if a.data is None else os.path.join(out, "data"),
                                            a.pseudo_masks, cluster.rows_per_shard, job.seed)
    result = run_training(job, shard_root, out, cluster, resume_from=a.resume)
    print(f"[train] run directory: {out}")
    print(f"[train] last checkpoint: {result.checkpoint.path if result.checkpoint else None}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
