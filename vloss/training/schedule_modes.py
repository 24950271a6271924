"""The schedule modes (Sec. 3.4, Table 4), as one table: how each lays out the epochs of a run.

An epoch is a sequence of *segments*, each one pass over a dense task's dataset with the caption
steps interleaved (``train.caption_ratio``) and each its own sub-epoch (a checkpoint at its end).
A mode gives the segments of its epochs, whether an epoch's steps are drawn into one seeded random
order, and whether the run has two stages (its first ``pretrain_epochs`` epochs, then the rest,
each with its own LR schedule). :mod:`pipelines.train.schedule` builds the step plan from it and
``TrainConfig.tasks_used`` the tasks a run reads; adding a mode is one entry here. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass

Segment = tuple[str, str]  # (sub-epoch name, dense task)


@dataclass(frozen=True)
class ScheduleMode:
    """One schedule mode.

    Args:
        name: the ``train.schedule`` value.
        segments: the segments of an epoch (of a first-stage epoch when ``later`` is given).
        later: the segments of the second stage's epochs (a two-stage mode), else None.
        shuffled: an epoch's steps (the same ones as its segments') are drawn into one seeded order,
            one sub-epoch named ``shuffled_name``.
        shuffled_name: the sub-epoch name of a shuffled epoch.
        about: where it comes from, in words.
    """

    name: str
    segments: tuple[Segment, ...]
    later: tuple[Segment, ...] | None = None
    shuffled: bool = False
    shuffled_name: str = "mixed"
    about: str = ""

    @property
    def staged(self) -> bool:
        """Two stages: first-stage epochs, then ``later`` ones."""
        return self.later is not None

    def layout(self, epoch: int, first_stage_epochs: int) -> tuple[Segment, ...]:
        """The segments of ``epoch`` (``first_stage_epochs``: epochs of the first stage of a staged mode)."""
        return self.later if self.later is not None and epoch >= first_stage_epochs else self.segments

    def dense_tasks(self) -> tuple[str, ...]:
        """The dense tasks its epochs read, in order of first appearance."""
        seen = [task for _, task in self.segments + (self.later or ())]
        return tuple(dict.fromkeys(seen))


SCHEDULE_MODES: dict[str, ScheduleMode] = {
    "stt": ScheduleMode("stt", (("warmup", "detection"), ("cooldown", "panoptic")),
                        about="the paper's Sec. 3.4 (Fig. 3 right): a warmup sub-epoch of detection, then a "
                              "cooldown sub-epoch of panoptic, every epoch"),
    "mix": ScheduleMode("mix", (("mixed", "detection"), ("mixed", "panoptic")), shuffled=True,
                        about="Table 4 'w/ Mixing' (Fig. 3 left): an STT epoch's batches in one seeded random order"),
    "pretrain": ScheduleMode("pretrain", (("pretrain", "detection"),), later=(("finetune", "panoptic"),),
                             about="Table 4 'w/ Pretrain': detection epochs, then panoptic fine-tuning epochs"),
    "panoptic": ScheduleMode("panoptic", (("panoptic", "panoptic"),),
                             about="the Mask2Former+CLIP baseline: panoptic epochs only"),
}
MODES: tuple[str, ...] = tuple(SCHEDULE_MODES)


def schedule_mode(name: str) -> ScheduleMode:
    """The table's entry for ``name``.

    Raises:
        ValueError: not a mode (names the known ones).
    """
    try:
        return SCHEDULE_MODES[name]
    except KeyError:
        raise ValueError(f"schedule: mode must be one of {MODES}, got {name!r}") from None
