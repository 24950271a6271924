"""Teacher configuration and the one place that turns it into a predictor."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Union

if TYPE_CHECKING:  # the networks are imported where a teacher is built: reading a config needs no torch
    from vloss.teacher.architectures import CheckpointSource
    from vloss.teacher.maskrcnn_predictor import BoxConditionedMaskRCNN
    from vloss.teacher.mmdet_predictor import BoxConditionedMMDet
    from vloss.teacher.output import BoxFillPredictor

@dataclass(frozen=True)
class TeacherBackend:
    """What a backend of the pseudo-mask teacher needs.

    Args:
        needs_checkpoint: it runs a trained network whose weights ``--checkpoint`` gives (its
            settings and the file's hash are then part of the job's plan).
    """

    needs_checkpoint: bool


# the backends: one entry each (a new one is an entry here plus its branch in build_teacher)
BACKENDS: dict[str, TeacherBackend] = {
    "maskrcnn": TeacherBackend(needs_checkpoint=True),
    "mmdet": TeacherBackend(needs_checkpoint=True),
    "box": TeacherBackend(needs_checkpoint=False),
}

Teacher = Union["BoxConditionedMaskRCNN", "BoxFillPredictor", "BoxConditionedMMDet"]


@dataclass
class TeacherConfig:
    """Which teacher turns boxes into masks.

    Args:
        backend: ``"maskrcnn"`` (box-conditioned torchvision Mask R-CNN), ``"mmdet"`` (box-conditioned
            MMDetection Mask R-CNN from a model-zoo checkpoint, :mod:`vloss.teacher.mmdet_predictor`;
            needs ``make install-mmdet``) or ``"box"`` (filled box baseline).
        arch: torchvision Mask R-CNN architecture (``vloss.teacher.architectures.TEACHER_ARCHS``).
        mmdet_config: the mmdet backend's config: a name of mmdet's packaged configs
            (``mask-rcnn_r50_fpn_1x_coco``) or a file (``.yaml``/``.json``; ``.py`` with ``trust_config``).
        trust_config: allow a user ``.py`` mmdet config, which mmengine runs to read it.
        min_size: resize shorter side (torchvision ``GeneralizedRCNNTransform``).
        max_size: resize longer-side cap.
        mask_threshold: mask probability threshold.
    """

    backend: str = "maskrcnn"
    arch: str = "maskrcnn_resnet50_fpn"
    min_size: int = 800
    max_size: int = 1333
    mask_threshold: float = 0.5
    mmdet_config: Optional[str] = None
    trust_config: bool = False

    @property
    def needs_checkpoint(self) -> bool:
        """The backend runs a trained network (``--checkpoint`` is required)."""
        return BACKENDS[self.backend].needs_checkpoint

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        from vloss.teacher.architectures import TEACHER_ARCHS

        if self.arch not in TEACHER_ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; choose one of {', '.join(TEACHER_ARCHS)}")
        if self.backend == "mmdet" and not self.mmdet_config:
            raise ValueError("the mmdet backend needs --mmdet-config (a packaged config name such as "
                             "mask-rcnn_r50_fpn_1x_coco, or a config file)")
        if not 0.0 <= self.mask_threshold < 1.0:
            raise ValueError(f"mask_threshold must lie in [0, 1), got {self.mask_threshold}")


def build_teacher(config: TeacherConfig, checkpoint: "CheckpointSource | None" = None,
                  checkpoint_name: str | None = None, device: str = "cpu") -> Teacher:
    """Build the predictor ``config`` asks for.

    Args:
        config: the teacher settings.
        checkpoint: state-dict path/bytes/file (required for ``maskrcnn``, ignored for ``box``).
        checkpoint_name: file name to use in error messages.
        device: where the network runs (``"cpu"``, ``"cuda"``); the caller derives it from the
            resources it holds.
    """
    from vloss.teacher.architectures import load_teacher
    from vloss.teacher.maskrcnn_predictor import BoxConditionedMaskRCNN
    from vloss.teacher.output import BoxFillPredictor

    if config.backend == "box":
        return BoxFillPredictor()
    if checkpoint is None:
        raise ValueError(f"the {config.backend} backend needs a checkpoint (a local state-dict file)")
    if config.backend == "mmdet":
        from vloss.teacher.mmdet_predictor import build_mmdet_teacher

        data = checkpoint if isinstance(checkpoint, bytes) else (
            open(checkpoint, "rb").read() if isinstance(checkpoint, (str, os.PathLike)) else checkpoint.read())
        return build_mmdet_teacher(config.mmdet_config or "", data, checkpoint_name or "checkpoint",
                                   mask_threshold=config.mask_threshold, device=device,
                                   trust_config=config.trust_config)
    model = load_teacher(checkpoint, config.arch, min_size=config.min_size, max_size=config.max_size,
                         name=checkpoint_name)
    return BoxConditionedMaskRCNN(model, mask_threshold=config.mask_threshold, device=device)
