"""Pseudo-mask teachers: boxes in, one mask per box out (pure PyTorch, no ray)."""

from vloss.teacher.architectures import (
                                         TEACHER_ARCHS,
                                         CheckpointError,
                                         TeacherArchConfig,
                                         build_maskrcnn,
                                         load_teacher,
                                         read_state_dict,
)
from vloss.teacher.boxes import BoxInstance, DetectionInput, ImageBoxes, clip_box, parse_detection_input
from vloss.teacher.config import BACKENDS, TeacherConfig, build_teacher
from vloss.teacher.maskrcnn_predictor import BoxConditionedMaskRCNN, image_to_tensor
from vloss.teacher.output import BoxFillPredictor, TeacherOutput, box_pixel_bounds

__all__ = [
    "TEACHER_ARCHS", "BACKENDS", "CheckpointError", "TeacherArchConfig", "build_maskrcnn", "load_teacher",
    "read_state_dict", "BoxInstance", "DetectionInput", "ImageBoxes", "clip_box", "parse_detection_input",
    "TeacherConfig", "build_teacher", "BoxConditionedMaskRCNN", "image_to_tensor", "BoxFillPredictor",
    "TeacherOutput", "box_pixel_bounds",
]
