"""Settings of one pseudo-mask run (typed; ``--set key=value`` addresses any field)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from pipelines.common.resources import default_cpus
from vloss.teacher.config import TeacherConfig


@dataclass
class PseudoMaskJobConfig:
    """Settings of one pseudo-mask run.

    Args:
        annotations: COCO detection JSON (local path or URI).
        images: image root the JSON's ``file_name`` values are relative to (path or URI).
        out: output directory (path or URI).
        checkpoint: teacher state-dict file (path or URI); required for ``maskrcnn`` and ``mmdet`` (an mmdet
            model-zoo ``.pth``).
        teacher: backend / architecture / resize settings.
        rows_per_shard: images per Parquet shard.
        sample: a seeded random subset of this many images with boxes (Sec. 4.1 samples ~0.66M of
            Objects365's ~2M training images); None: all. Applied before ``limit``.
        sample_seed: seed of that subset (the same seed and input give the same images).
        limit: only the first ``limit`` images (sorted by id) that have boxes.
        strict: abort on the first image that cannot be read or decoded.
        overwrite: replace an output directory that holds another plan's shards (a new generation,
            switched in when complete) instead of refusing.
        num_actors: teacher actors in the pool.
        gpus_per_actor: GPUs per teacher actor (0 on CPU machines); an actor with a GPU runs
            the teacher on CUDA.
        cpus_per_actor: logical CPUs each teacher actor reserves (None: 4 with a GPU, else 0.5).
        cpus_per_decode_task: logical CPUs each decode task reserves.
        decode_tasks: decode tasks in flight at once (each worker is reused); None: two per teacher
            actor, so the decode keeps up as the pool grows (one task reads and decodes about 40 full-size
            Objects365 JPEGs/s on one core, about one GPU teacher's rate).
        batch_size: images per teacher call.
        ray_num_cpus: CPUs of the embedded local Ray (only when not inside a Ray job / cluster).
        resource_wait_s: seconds to wait for a joined cluster's autoscaler to provide the actors'
            resources before failing (None: 300 on a joined cluster, 0 on the embedded Ray). It also bounds the
            actor pool's start (unset or 0: 120 s locally, 600 s on a joined cluster), so a cluster whose
            CPUs another job holds fails in one line instead of waiting forever.
        shared_fs: local paths lie on a mount every node of the cluster shares at the same path;
            without it a cluster of several nodes refuses local paths its tasks would use
            (:mod:`pipelines.common.shared_paths`).
    """

    annotations: str
    images: str
    out: str
    checkpoint: Optional[str] = None
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    rows_per_shard: int = 1000
    sample: Optional[int] = None
    sample_seed: int = 0
    limit: Optional[int] = None
    strict: bool = False
    overwrite: bool = False
    num_actors: int = 1
    gpus_per_actor: float = 0.0
    cpus_per_actor: Optional[float] = None
    cpus_per_decode_task: float = 0.25
    decode_tasks: Optional[int] = None
    batch_size: int = 4
    ray_num_cpus: int = 2
    resource_wait_s: Optional[float] = None
    shared_fs: bool = False

    def __post_init__(self) -> None:
        if self.teacher.backend in ("maskrcnn", "mmdet") and not self.checkpoint:
            raise ValueError(f"--checkpoint is required for the {self.teacher.backend} backend")
        if self.limit is not None and self.limit <= 0:
            raise ValueError(f"limit must be positive, got {self.limit}")
        if self.sample is not None and self.sample <= 0:
            raise ValueError(f"sample must be positive, got {self.sample}")
        if self.num_actors <= 0 or self.batch_size <= 0 or self.rows_per_shard <= 0:
            raise ValueError("num_actors, batch_size and rows_per_shard must be positive")
        if self.decode_tasks is not None and self.decode_tasks <= 0:
            raise ValueError(f"decode_tasks must be positive, got {self.decode_tasks}")

    @property
    def decode_task_count(self) -> int:
        """Decode tasks in flight: the explicit setting, else two per teacher actor."""
        return self.decode_tasks if self.decode_tasks is not None else 2 * self.num_actors

    @property
    def actor_cpus(self) -> float:
        """CPUs each teacher actor reserves (the explicit setting, else the default for its GPUs)."""
        return self.cpus_per_actor if self.cpus_per_actor is not None else default_cpus(self.gpus_per_actor)
