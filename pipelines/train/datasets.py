"""A task's training shards as a Ray dataset of transformed rows (the transforms run in Ray Data tasks)."""

from __future__ import annotations

from pipelines.common.storage import locate
from pipelines.train.shards import task_shard_paths
from pipelines.train.transforms import CaptionTransform, DenseTransform
from vloss.config import InputConfig


def task_dataset(root: str, task: str, cfg: InputConfig, limit: int = 0, num_cpus: float = 0.25):
    """A task's shards as a Ray dataset of transformed rows.

    Args:
        root: shard root (path or URI) written by :mod:`pipelines.train.sources`.
        task: "panoptic", "detection" or "captions".
        cfg: input settings.
        limit: read only the first ``limit`` rows of every pass (0 = all).
        num_cpus: CPUs each transform task reserves (fractional on small machines).
    """
    import ray

    loc = locate(root)
    paths = task_shard_paths(loc, task)
    if not paths:
        raise FileNotFoundError(f"no '{task}' shards under {root}/{task} (python -m jobs.train builds them "
                                f"from --data, or pipelines.train.sources.build_training_shards)")
    ds = ray.data.read_parquet(paths, filesystem=loc.fs)
    if limit:
        ds = ds.limit(limit)
    if task == "captions":
        fn = CaptionTransform(cfg.caption_size, cfg.seed)
    else:
        fn = DenseTransform(cfg.dense_size, cfg.lsj_min_scale, cfg.lsj_max_scale, cfg.seed)
    return ds.map(fn, num_cpus=num_cpus)
