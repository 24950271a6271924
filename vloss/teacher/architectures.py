"""Mask R-CNN teacher architectures and checkpoint loading.

The teacher is torchvision's Mask R-CNN, always built with ``weights=None`` and
``weights_backbone=None`` so nothing is downloaded; its weights come only from a
local state-dict file (or bytes the caller read from an object store) loaded with
``torch.load(..., map_location="cpu", weights_only=True)``.

Architectures (``TEACHER_ARCHS``):

* ``maskrcnn_resnet50_fpn``    – torchvision's classic Mask R-CNN (He et al. 2017).
* ``maskrcnn_resnet50_fpn_v2`` – torchvision's improved recipe (Li et al. 2021).
* ``maskrcnn_resnet18_fpn``    – a small ResNet-18 FPN backbone in
  ``MaskRCNN(backbone=...)``, for the demo and for CPU tests.

The number of classes is read from the checkpoint
(``roi_heads.box_predictor.cls_score.weight`` is ``[num_classes, D]``), so a
COCO teacher (91 classes) and a custom one load through the same call.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import BinaryIO, Union

import torch
from torch import nn
from torchvision.models.detection import MaskRCNN, maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

TEACHER_ARCHS = ("maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2", "maskrcnn_resnet18_fpn")
CLS_SCORE_KEY = "roi_heads.box_predictor.cls_score.weight"

CheckpointSource = Union[str, os.PathLike, bytes, BinaryIO]


class CheckpointError(ValueError):
    """A teacher checkpoint cannot be used; the message names the file and the parameter."""


@dataclass
class TeacherArchConfig:
    """How to build the teacher network.

    Args:
        arch: one of ``TEACHER_ARCHS``.
        num_classes: classes including background (91 for torchvision's COCO models).
        min_size: shorter image side after ``GeneralizedRCNNTransform`` resizing.
        max_size: cap on the longer side after resizing.
    """

    arch: str = "maskrcnn_resnet50_fpn"
    num_classes: int = 91
    min_size: int = 800
    max_size: int = 1333

    def __post_init__(self) -> None:
        if self.arch not in TEACHER_ARCHS:
            raise ValueError(f"unknown teacher arch {self.arch!r}; choose one of {', '.join(TEACHER_ARCHS)}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (background + 1), got {self.num_classes}")
        if self.min_size <= 0 or self.max_size < self.min_size:
            raise ValueError(f"need 0 < min_size <= max_size, got {self.min_size}, {self.max_size}")


def build_maskrcnn(config: TeacherArchConfig) -> MaskRCNN:
    """Build a randomly initialised Mask R-CNN (no downloads) in eval mode.

    Args:
        config: architecture, class count and resize sizes.
    Returns:
        a ``torchvision.models.detection.MaskRCNN``.
    """
    kwargs = dict(num_classes=config.num_classes, min_size=config.min_size, max_size=config.max_size)
    if config.arch == "maskrcnn_resnet50_fpn":
        model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, **kwargs)
    elif config.arch == "maskrcnn_resnet50_fpn_v2":
        model = maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, **kwargs)
    else:  # maskrcnn_resnet18_fpn
        backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5)
        model = MaskRCNN(backbone, **kwargs)
    return model.eval()


def read_state_dict(source: CheckpointSource, name: str | None = None) -> dict[str, torch.Tensor]:
    """Load a state dict with ``weights_only=True`` on the CPU.

    Accepts a plain state dict or one wrapped as ``{"model": sd}`` / ``{"state_dict": sd}``.

    Args:
        source: a local path, raw bytes, or a binary file object.
        name: how to name the file in errors (defaults to the path).
    """
    label = name or (str(source) if isinstance(source, (str, os.PathLike)) else "<checkpoint bytes>")
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    try:
        obj = torch.load(source, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise CheckpointError(f"{label}: checkpoint file not found") from exc
    except Exception as exc:  # unpickling errors, truncated zip archives, ...
        raise CheckpointError(f"{label}: not a loadable weights-only torch checkpoint ({exc})") from exc
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{label}: expected a state dict of tensors, got {type(obj).__name__}")
    return obj


def num_classes_from_state_dict(state: dict[str, torch.Tensor], name: str) -> int:
    """Class count (incl. background) stored in a Mask R-CNN state dict."""
    if CLS_SCORE_KEY not in state:
        raise CheckpointError(f"{name}: parameter '{CLS_SCORE_KEY}' missing; not a Mask R-CNN state dict")
    return int(state[CLS_SCORE_KEY].shape[0])


def load_into(model: nn.Module, state: dict[str, torch.Tensor], name: str) -> None:
    """Copy ``state`` into ``model`` strictly, naming the first offending parameter on error.

    Args:
        model: the network built for the requested architecture.
        state: the checkpoint's tensors.
        name: the checkpoint's file name, for messages.
    """
    own = model.state_dict()
    for key, value in state.items():
        if key in own and tuple(own[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f"{name}: parameter '{key}' has shape {tuple(value.shape)} in the checkpoint but "
                f"{tuple(own[key].shape)} in the model (wrong --arch for this checkpoint?)")
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing parameters {missing[:5]}" + (" ..." if len(missing) > 5 else ""))
        if unexpected:
            parts.append(f"unexpected parameters {unexpected[:5]}" + (" ..." if len(unexpected) > 5 else ""))
        raise CheckpointError(f"{name}: checkpoint does not match the architecture: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


def load_teacher(source: CheckpointSource, arch: str, *, min_size: int = 800, max_size: int = 1333,
                 name: str | None = None) -> MaskRCNN:
    """Build ``arch`` with the class count found in the checkpoint and load its weights.

    Args:
        source: local path, bytes or binary file object of a state dict.
        arch: one of ``TEACHER_ARCHS``.
        min_size: ``GeneralizedRCNNTransform`` shorter-side size.
        max_size: ``GeneralizedRCNNTransform`` longer-side cap.
        name: file name to report in errors.
    Returns:
        the loaded model in eval mode.
    """
    label = name or (str(source) if isinstance(source, (str, os.PathLike)) else "<checkpoint bytes>")
    state = read_state_dict(source, label)
    config = TeacherArchConfig(arch=arch, num_classes=num_classes_from_state_dict(state, label),
                               min_size=min_size, max_size=max_size)
    model = build_maskrcnn(config)
    load_into(model, state, label)
    return model.eval()
