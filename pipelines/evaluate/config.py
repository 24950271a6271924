"""Settings of one evaluation run (typed; ``--set key=value`` addresses any field)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipelines.common.actor_pool import ActorPoolConfig
from pipelines.evaluate.tasks import get_task


@dataclass
class EvalJobConfig:
    """Settings of one evaluation run.

    Args:
        task: a name of :data:`pipelines.evaluate.tasks.EVAL_TASKS` (``ade20k_panoptic``,
            ``coco_panoptic``, ``lvis``, ``lvis_minival``, ``coco_instances``).
        checkpoint: training checkpoint directory or model-weights file.
        out: output directory.
        data: data root (see ``docs/EVALUATION.md``); or give the explicit paths below.
        gt_json, images, gt_dir: explicit ground-truth paths (override the layout).
        vocab_file: prompt the set's categories with these names instead of its own
            (:func:`pipelines.evaluate.data.with_vocabulary_file`; ``docs/CUSTOM_DATA.md``).
        config: preset for a weights file without stored config (``tiny|paper|baseline``).
        overrides: ``key=value`` overrides of the checkpoint's job config (``model.text.templates=...``).
        size: shorter side of the network input (default: the run's training size).
        max_size: cap on the longer side (default: 4 x size).
        limit: evaluate only the first N images.
        topk: detections per image for instance tasks (default: the task's protocol, LVIS 300, COCO 100).
        object_mask_threshold, overlap_threshold: panoptic inference thresholds.
        overlays: number of overlay images to draw.
        batch_size: images per predictor call.
        pq_workers: threads of the PQ scorer (None: min(4, cpus)).
        pq_crowd_rule: ``official`` (the COCO panoptic API's crowd rule, what published numbers
            use) or ``all`` (every crowd region of the category); see :mod:`vloss.eval.pq_stats`.
        pq_from: ``memory``: each image is scored while the others are predicted, from the segment
            ids the actors return (no predicted PNG is decoded again); ``files``: the written
            PNGs + JSON are scored afterwards with :func:`vloss.eval.pq.pq_compute`. Both give
            the same numbers (tested); ``memory`` saves the decode and overlaps the scoring.
        pool: the predictor actors' resources (:class:`pipelines.common.actor_pool.ActorPoolConfig`).
    """

    task: str
    checkpoint: str
    out: str
    data: str | None = None
    gt_json: str | None = None
    images: str | None = None
    gt_dir: str | None = None
    vocab_file: str | None = None
    config: str | None = None
    overrides: tuple[str, ...] = ()
    size: int | None = None
    max_size: int | None = None
    limit: int | None = None
    topk: int | None = None
    object_mask_threshold: float = 0.8
    overlap_threshold: float = 0.8
    overlays: int = 4
    batch_size: int = 2
    pq_workers: int | None = None
    pq_crowd_rule: str = "official"
    pq_from: str = "memory"
    pool: ActorPoolConfig = field(default_factory=ActorPoolConfig)

    def __post_init__(self) -> None:
        get_task(self.task)  # unknown names fail here, listing the known ones
        for name in ("size", "max_size", "limit", "topk"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise ValueError(f"{name} must be positive, got {v}")
        if self.pq_crowd_rule not in ("official", "all"):
            raise ValueError(f"pq_crowd_rule must be official or all, got {self.pq_crowd_rule!r}")
        if self.pq_from not in ("memory", "files"):
            raise ValueError(f"pq_from must be memory or files, got {self.pq_from!r}")
        if self.batch_size <= 0 or self.overlays < 0:
            raise ValueError("batch_size must be positive, overlays >= 0")
