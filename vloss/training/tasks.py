"""The training tasks, as one table: what each needs from the config, the data and the losses.

Three tasks feed one network (Sec. 3.2–3.3): panoptic (COCO panoptic, Eqs. 3–5), detection
(Objects365 boxes with their pseudo masks; only the boxed objects are labelled, so
``loss.positive_only_detection`` may skip the no-object term) and captions (image-text pairs, the
contrastive ``L_con`` of Eq. 6). Code that differs by task reads a property here instead of
comparing names; adding a task is one entry plus its reader, transform, collate and loss step
(``docs/DESIGN.md``, "Where a change goes"). Torch-free: ``vloss.config`` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainingTask:
    """One training task.

    Args:
        name: its name in schedules, shards and logs.
        dense: supervised with masks and classes (the set criterion); else image-text pairs (``L_con``).
        batch_key: the ``TrainConfig`` field holding its global batch.
        size_key: the ``InputConfig`` field holding its input size.
        dataset: the dataset its shards record by default.
        partial_labels: only some objects are labelled (boxes of a detection set), so
            ``loss.positive_only_detection`` applies.
    """

    name: str
    dense: bool
    batch_key: str
    size_key: str
    dataset: str
    partial_labels: bool = False


TRAINING_TASKS: dict[str, TrainingTask] = {
    "panoptic": TrainingTask("panoptic", True, "dense_batch_size", "dense_size", "coco_panoptic"),
    "detection": TrainingTask("detection", True, "dense_batch_size", "dense_size", "objects365", partial_labels=True),
    "captions": TrainingTask("captions", False, "caption_batch_size", "caption_size", "coco_captions"),
}
TASKS: tuple[str, ...] = tuple(TRAINING_TASKS)


def training_task(name: str) -> TrainingTask:
    """The table's entry for ``name``.

    Raises:
        ValueError: not a training task (names the known ones).
    """
    try:
        return TRAINING_TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; expected one of {TASKS}") from None
