"""Pseudo-mask teachers: boxes in, one mask per box out (pure PyTorch, no ray).

The names below are imported on first use (PEP 562), so that reading a teacher's config
(:mod:`vloss.teacher.config`, a job's ``--help``) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "vloss.teacher.architectures": ("TEACHER_ARCHS", "CheckpointError", "TeacherArchConfig", "build_maskrcnn",
                                    "load_teacher", "read_state_dict"),
    "vloss.teacher.boxes": ("BoxInstance", "DetectionInput", "ImageBoxes", "clip_box", "parse_detection_input"),
    "vloss.teacher.config": ("BACKENDS", "TeacherConfig", "build_teacher"),
    "vloss.teacher.maskrcnn_predictor": ("BoxConditionedMaskRCNN", "image_to_tensor"),
    "vloss.teacher.output": ("BoxFillPredictor", "TeacherOutput", "box_pixel_bounds"),
}
_MODULE_OF = {name: module for module, names in _HOME.items() for name in names}

__all__ = list(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'vloss.teacher' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
