"""The training job's own settings: how a run maps onto the Ray cluster.

The recipe itself (network, loss, optimiser, input, schedule) is :class:`vloss.config.TrainJobConfig`;
this section adds what only the Ray side knows: workers, their resources, failure handling and
where checkpoints live. ``jobs/train.py`` routes ``--set cluster.KEY=VALUE`` here and every other
``--set`` to the recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from vloss.checks import at_least, non_negative, positive


@dataclass
class ClusterConfig:
    """How many workers and what each reserves.

    Args:
        workers: Ray Train workers (ranks); with ``min_workers`` the most an elastic run uses.
        min_workers: 0 (default): a fixed worker group of ``workers``; from 1 to ``workers``: an
            elastic run (Ray Train's ``ScalingConfig(num_workers=(min, max))``, ``--workers MIN:MAX``)
            that starts on as many workers as the cluster holds between the two, continues on the
            workers left when a node goes (restarting from its latest checkpoint, a restart that counts
            against ``max_failures``), and grows back when it returns. Every step trains on the same
            global batch and the same images on any number of workers (more accumulation on fewer).
        elastic_resize_s: an elastic run looks for room for more workers this often (Ray Train's
            ``elastic_resize_monitor_interval_s``; growing restarts the group from its latest checkpoint).
        gpus_per_worker: GPUs per worker (0 = CPU training); a worker holding a GPU trains on CUDA.
        cpus_per_worker: logical CPUs per worker (keep some for Ray Data on small machines).
        max_failures: worker-group restarts from the last checkpoint before giving up.
        storage_path: the runs' storage every node reaches (s3://... or a shared mount): checkpoints,
            the best checkpoint and shards built by the job go to ``STORAGE/<run name>`` (the base name
            of ``--out``); None keeps them in the run directory.
        transform_cpus: CPUs each Ray Data transform task reserves.
        rows_per_shard: images per training shard when shards are built.
        resource_wait_s: seconds to wait for a joined cluster's autoscaler to provide the workers'
            resources before failing (None: 300 on a joined cluster, 0 on the embedded Ray).
        cache_shards_mb: a task whose training shards total at most this many MB is read once
            into Ray's object store, and every pass only re-runs the transforms on the cached
            rows; larger ones are streamed from storage on every pass (0 = never cache). Measured
            here (2 cores, 96 demo-world images): a pass that re-reads its Parquet shards waits
            7-8 s before the first batch, one over cached rows 0.5 s, while the transforms
            themselves take 0.4 s; on real datasets the shards are far larger than this default
            and stream as before.
        verify_shards: ``fast`` (default): a start checks the shards' names and sizes against the
            manifest, and every read verifies the Parquet page checksums written into each shard,
            so the start-up does not grow with the dataset; ``full``: the readers also compare
            each shard's whole-file sha256 with the manifest before using it.
        stop_grace_s: on SIGTERM during training, seconds the workers get to finish the step in
            flight and write its checkpoint before the driver stops at once (0: at once, losing the
            steps since the latest checkpoint). Our choice: 25, under Kubernetes' default 30-s
            termination grace period; see :mod:`pipelines.train.stop`.
        shared_fs: local paths lie on a mount every node of the cluster shares at the same path;
            without it a cluster of several nodes refuses local paths its tasks would use
            (:mod:`pipelines.common.shared_paths`).
        checkpoint_upload: ``async`` (default): a checkpoint is copied to the run's storage by Ray
            Train's background upload (``CheckpointUploadMode.ASYNC``) while the workers train on,
            and Ray removes the local copy once uploaded; ``sync``: the workers wait for the upload
            (Ray Train's default), e.g. where the local disk cannot hold a second checkpoint.
    """

    workers: int = 2
    min_workers: int = 0
    elastic_resize_s: float = 60.0
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 0.5
    max_failures: int = 1
    storage_path: Optional[str] = None
    transform_cpus: float = 0.25
    rows_per_shard: int = 256
    resource_wait_s: Optional[float] = None
    cache_shards_mb: float = 256.0
    shared_fs: bool = False
    verify_shards: str = "fast"
    stop_grace_s: float = 25.0
    checkpoint_upload: str = "async"

    def __post_init__(self) -> None:
        at_least("cluster", 1, workers=self.workers, rows_per_shard=self.rows_per_shard)
        at_least("cluster", 0, max_failures=self.max_failures, min_workers=self.min_workers)
        if self.min_workers > self.workers:
            raise ValueError(f"cluster.min_workers={self.min_workers} is more than cluster.workers={self.workers} "
                             f"(--workers MIN:MAX needs MIN <= MAX)")
        positive("cluster", elastic_resize_s=self.elastic_resize_s)
        non_negative("cluster", gpus_per_worker=self.gpus_per_worker, cache_shards_mb=self.cache_shards_mb,
                     stop_grace_s=self.stop_grace_s)
        positive("cluster", cpus_per_worker=self.cpus_per_worker, transform_cpus=self.transform_cpus)
        if self.resource_wait_s is not None:
            non_negative("cluster", resource_wait_s=self.resource_wait_s)
        if self.verify_shards not in ("fast", "full"):
            raise ValueError(f"cluster.verify_shards must be 'fast' or 'full', got {self.verify_shards!r}")
        if self.checkpoint_upload not in ("async", "sync"):
            raise ValueError(f"cluster.checkpoint_upload must be 'async' or 'sync', got {self.checkpoint_upload!r}")

    def is_elastic(self) -> bool:
        """Whether the worker group may shrink and grow (``min_workers`` set below ``workers``)."""
        return 0 < self.min_workers < self.workers

    def resolved_min_workers(self) -> int:
        """The fewest workers the run trains on (``workers`` for a fixed group)."""
        return self.min_workers if self.is_elastic() else self.workers

    def worker_counts(self) -> list[int]:
        """Every number of workers the run may train on, fewest first."""
        return list(range(self.resolved_min_workers(), self.workers + 1))

    def scaling_workers(self) -> int | tuple[int, int]:
        """``ScalingConfig(num_workers=...)``: a count, or ``(min, max)`` for an elastic run."""
        return (self.min_workers, self.workers) if self.is_elastic() else self.workers
