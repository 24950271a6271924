"""Settings of one batch-prediction run (typed; ``--set key=value`` addresses any field)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from pipelines.common.actor_pool import ActorPoolConfig
from vloss.inference.predict_cli import check_one_vocabulary


@dataclass
class PredictJobConfig:
    """Settings of one batch-prediction run.

    Args:
        images: an image folder (local path or object-store URI; searched recursively) or a local glob.
        checkpoint: training checkpoint directory or weights file.
        out: output directory (path or URI).
        vocab_file: the vocabulary (one name per line with ``thing:``/``stuff:`` prefixes, or a JSON
            list of ``{name, isthing}``); or give ``things``/``stuff``.
        things, stuff: the vocabulary as names (the ``--things``/``--stuff`` of ``vloss predict``).
        config: preset for a weights file that stores no config.
        task: ``panoptic`` | ``instance`` | ``semantic``.
        size: shorter side of the network input (None: the run's training size).
        threshold: panoptic: min class probability of a segment (None: 0.8); instance: min score.
        topk: instance: detections per image.
        overlays: also write ``OUT/overlays/<index>_<name>.png`` per image.
        rows_per_shard: images per Parquet shard.
        limit: only the first ``limit`` images (sorted paths).
        overwrite: replace an output directory that holds another plan's shards.
        batch_size: images per predictor call.
        pool: the predictor actors' resources (:class:`pipelines.common.actor_pool.ActorPoolConfig`).
    """

    images: str
    checkpoint: str
    out: str
    vocab_file: Optional[str] = None
    things: tuple[str, ...] = ()
    stuff: tuple[str, ...] = ()
    config: Optional[str] = None
    task: str = "panoptic"
    size: Optional[int] = None
    threshold: Optional[float] = None
    topk: int = 100
    overlays: bool = False
    rows_per_shard: int = 256
    limit: Optional[int] = None
    overwrite: bool = False
    batch_size: int = 2
    pool: ActorPoolConfig = field(default_factory=ActorPoolConfig)

    def __post_init__(self) -> None:
        check_one_vocabulary(self.vocab_file, self.things, self.stuff)
        if self.task not in ("panoptic", "instance", "semantic"):
            raise ValueError(f"task must be panoptic, instance or semantic, got {self.task!r}")
        if self.batch_size <= 0 or self.rows_per_shard <= 0:
            raise ValueError("batch_size and rows_per_shard must be positive")
        if self.limit is not None and self.limit <= 0:
            raise ValueError(f"limit must be positive, got {self.limit}")
