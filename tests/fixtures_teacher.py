"""Teacher fixtures (the pseudo-mask stage and the teacher library): a tiny synthetic world, the
real COCO sample as a second box source, and a random-init teacher checkpoint."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from vloss.teacher.architectures import TeacherArchConfig, build_maskrcnn

TINY_ARCH = "maskrcnn_resnet18_fpn"
TINY_MIN_SIZE, TINY_MAX_SIZE = 128, 192


@dataclass
class BoxSource:
    """A detection JSON, its image root and a COCO JSON with the true masks."""

    name: str
    annotations: Path
    images: Path
    truth: Path


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> Path:
    """A small synthetic world (10 Objects365 images, other splits minimal)."""
    from vloss.data.synthetic import WorldSizes, generate_world

    root = tmp_path_factory.mktemp("world")
    generate_world(root, seed=0, sizes=WorldSizes(coco_panoptic_train=1, coco_panoptic_val=1, objects365_train=10,
                                                  image_text=1, ade20k_val=1, lvis_val=1,
                                                  pretrain_corpus=1))
    return root


@pytest.fixture(scope="session")
def synthetic_source(world) -> BoxSource:
    o = world / "objects365"
    return BoxSource("synthetic", o / "annotations" / "train.json", o / "images" / "train",
                     o / "truth" / "train_masks.json")


@pytest.fixture(scope="session")
def sample_source(shared_data) -> BoxSource:
    s = shared_data / "coco-panoptic-sample"
    return BoxSource("sample", s / "panoptic_coco_detection_format.json", s / "input_images",
                     s / "panoptic_coco_detection_format.json")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised ResNet-18 FPN Mask R-CNN (5 classes) saved as a state dict."""
    torch.manual_seed(0)
    model = build_maskrcnn(TeacherArchConfig(TINY_ARCH, num_classes=5, min_size=TINY_MIN_SIZE,
                                             max_size=TINY_MAX_SIZE))
    path = tmp_path_factory.mktemp("ckpt") / "teacher_r18.pth"
    torch.save(model.state_dict(), path)
    return path


def load_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
