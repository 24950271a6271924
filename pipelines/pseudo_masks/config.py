"""Settings of one pseudo-mask run (typed; ``--set key=value`` addresses any field)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from pipelines.common.actor_pool import ActorPoolConfig
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
        batch_size: images per teacher call.
        pool: the teacher actors' resources (:class:`pipelines.common.actor_pool.ActorPoolConfig`).
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
    batch_size: int = 4
    pool: ActorPoolConfig = field(default_factory=ActorPoolConfig)

    def __post_init__(self) -> None:
        if self.teacher.backend in ("maskrcnn", "mmdet") and not self.checkpoint:
            raise ValueError(f"--checkpoint is required for the {self.teacher.backend} backend")
        if self.limit is not None and self.limit <= 0:
            raise ValueError(f"limit must be positive, got {self.limit}")
        if self.sample is not None and self.sample <= 0:
            raise ValueError(f"sample must be positive, got {self.sample}")
        if self.batch_size <= 0 or self.rows_per_shard <= 0:
            raise ValueError("batch_size and rows_per_shard must be positive")
