"""Settings of one batch-prediction run (typed; ``--set key=value`` addresses any field)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from pipelines.common.resources import default_cpus
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
        num_actors: predictor actors.
        gpus_per_actor: GPUs per actor; an actor holding a GPU predicts on CUDA.
        cpus_per_actor: CPUs each actor reserves (None: 4 with a GPU, else 0.5).
        cpus_per_decode_task: CPUs each decode task reserves.
        batch_size: images per predictor call.
        ray_num_cpus: CPUs of an embedded local Ray.
        resource_wait_s: seconds to wait for a joined cluster's autoscaler (None: 300, 0 locally). It also bounds the
            actor pool's start (unset or 0: 120 s locally, 600 s on a joined cluster), so a cluster whose
            CPUs another job holds fails in one line instead of waiting forever.
        shared_fs: local paths lie on a mount every node of the cluster shares at the same path;
            without it a cluster of several nodes refuses local image paths
            (:mod:`pipelines.common.shared_paths`).
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
    num_actors: int = 1
    gpus_per_actor: float = 0.0
    cpus_per_actor: Optional[float] = None
    cpus_per_decode_task: float = 0.25
    batch_size: int = 2
    ray_num_cpus: Optional[int] = None
    resource_wait_s: Optional[float] = None
    shared_fs: bool = False

    def __post_init__(self) -> None:
        check_one_vocabulary(self.vocab_file, self.things, self.stuff)
        if self.task not in ("panoptic", "instance", "semantic"):
            raise ValueError(f"task must be panoptic, instance or semantic, got {self.task!r}")
        if self.num_actors <= 0 or self.batch_size <= 0 or self.rows_per_shard <= 0:
            raise ValueError("num_actors, batch_size and rows_per_shard must be positive")
        if self.limit is not None and self.limit <= 0:
            raise ValueError(f"limit must be positive, got {self.limit}")

    @property
    def actor_cpus(self) -> float:
        """CPUs each predictor actor reserves."""
        return self.cpus_per_actor if self.cpus_per_actor is not None else default_cpus(self.gpus_per_actor)
