"""A task's training shards as a Ray dataset of transformed rows (the transforms run in Ray Data tasks)."""

from __future__ import annotations

from pipelines.common.storage import locate
from pipelines.train.shards import task_shard_paths
from pipelines.train.transforms import CaptionTransform, DenseTransform
from vloss.config import InputConfig


def shard_bytes(root: str, task: str) -> int:
    """Total size in bytes of a task's training shards (0 when it has none)."""
    loc = locate(root)
    return sum(int(loc.fs.get_file_info(p).size or 0) for p in task_shard_paths(loc, task))


def task_dataset(root: str, task: str, cfg: InputConfig, limit: int = 0, num_cpus: float = 0.25,
                 cache: bool = False):
    """A task's shards as a Ray dataset of transformed rows.

    Args:
        root: shard root (path or URI) written by :mod:`pipelines.train.sources`.
        task: "panoptic", "detection" or "captions".
        cfg: input settings.
        limit: read only the first ``limit`` rows of every pass (0 = all).
        num_cpus: CPUs each transform task reserves (fractional on small machines).
        cache: read the (limited) shard rows once into Ray's object store; every pass then
            re-runs only the transforms (fresh augmentation) on the cached rows instead of
            re-reading storage (:attr:`ClusterConfig.cache_shards_mb` decides).
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
    if cache:
        ds = ds.materialize()
    if task == "captions":
        fn = CaptionTransform(cfg.caption_size, cfg.seed)
    else:
        fn = DenseTransform(cfg.dense_size, cfg.lsj_min_scale, cfg.lsj_max_scale, cfg.seed)
    return ds.map(fn, num_cpus=num_cpus)
