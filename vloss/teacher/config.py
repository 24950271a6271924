"""Teacher configuration and the one place that turns it into a predictor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from vloss.teacher.architectures import TEACHER_ARCHS, CheckpointSource, load_teacher
from vloss.teacher.maskrcnn_predictor import BoxConditionedMaskRCNN
from vloss.teacher.output import BoxFillPredictor

BACKENDS = ("maskrcnn", "box")

Teacher = Union[BoxConditionedMaskRCNN, BoxFillPredictor]


@dataclass
class TeacherConfig:
    """Which teacher turns boxes into masks.

    Args:
        backend: ``"maskrcnn"`` (box-conditioned Mask R-CNN) or ``"box"`` (filled box baseline).
        arch: Mask R-CNN architecture (``vloss.teacher.architectures.TEACHER_ARCHS``).
        min_size: resize shorter side (torchvision ``GeneralizedRCNNTransform``).
        max_size: resize longer-side cap.
        mask_threshold: mask probability threshold.
    """

    backend: str = "maskrcnn"
    arch: str = "maskrcnn_resnet50_fpn"
    min_size: int = 800
    max_size: int = 1333
    mask_threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if self.arch not in TEACHER_ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; choose one of {', '.join(TEACHER_ARCHS)}")
        if not 0.0 <= self.mask_threshold < 1.0:
            raise ValueError(f"mask_threshold must lie in [0, 1), got {self.mask_threshold}")


def build_teacher(config: TeacherConfig, checkpoint: CheckpointSource | None = None,
                  checkpoint_name: str | None = None, device: str = "cpu") -> Teacher:
    """Build the predictor ``config`` asks for.

    Args:
        config: the teacher settings.
        checkpoint: state-dict path/bytes/file (required for ``maskrcnn``, ignored for ``box``).
        checkpoint_name: file name to use in error messages.
        device: where the network runs (``"cpu"``, ``"cuda"``); the caller derives it from the
            resources it holds.
    """
    if config.backend == "box":
        return BoxFillPredictor()
    if checkpoint is None:
        raise ValueError("the maskrcnn backend needs a checkpoint (a local state-dict file)")
    model = load_teacher(checkpoint, config.arch, min_size=config.min_size, max_size=config.max_size,
                         name=checkpoint_name)
    return BoxConditionedMaskRCNN(model, mask_threshold=config.mask_threshold, device=device)
