"""The box-conditioned teacher against torchvision's own Mask R-CNN code, checkpoints, box baseline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models.detection.transform import resize_boxes

from tests.fixtures_teacher import TINY_ARCH, TINY_MAX_SIZE, TINY_MIN_SIZE, load_json
from vloss.data.masks import mask_to_bbox
from vloss.teacher import (
    BoxConditionedMaskRCNN,
    BoxFillPredictor,
    CheckpointError,
    TeacherArchConfig,
    TeacherConfig,
    box_pixel_bounds,
    build_maskrcnn,
    build_teacher,
    image_to_tensor,
    load_teacher,
)


@pytest.fixture(scope="module")
def sample_image_and_boxes(sample_source):
    """The first real COCO sample image and 6 of its boxes (xyxy)."""
    data = load_json(sample_source.annotations)
    img = data["images"][0]
    image = np.asarray(Image.open(sample_source.images / img["file_name"]).convert("RGB"))
    anns = [a for a in data["annotations"] if a["image_id"] == img["id"]][:6]
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], dtype=np.float64)
    return image, boxes


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build_maskrcnn(TeacherArchConfig(TINY_ARCH, num_classes=5, min_size=TINY_MIN_SIZE,
                                            max_size=TINY_MAX_SIZE))


def torchvision_reference(model, image: np.ndarray, boxes_xyxy: np.ndarray):
    """Masks from torchvision's own RoIHeads.forward + transform.postprocess, with detection
    post-processing replaced by "keep the given boxes, label = best non-background class"."""
    x = image_to_tensor(image)
    size = (image.shape[0], image.shape[1])
    with torch.no_grad():
        batch, _ = model.transform([x])
        feats = model.backbone(batch.tensors)
        rois = resize_boxes(torch.as_tensor(boxes_xyxy, dtype=torch.float32), size, batch.image_sizes[0])
        heads = model.roi_heads

        def keep_given_boxes(class_logits, box_regression, proposals, image_shapes):
            probs = torch.softmax(class_logits, -1)
            scores, labels = probs[:, 1:].max(-1)
            return [proposals[0]], [scores], [labels + 1]

        heads.postprocess_detections = keep_given_boxes
        try:
            result, _ = heads(feats, [rois], batch.image_sizes)
        finally:
            del heads.postprocess_detections
        result = model.transform.postprocess(result, batch.image_sizes, [size])
    return result[0]


def test_box_conditioned_equals_torchvision_postprocessing(tiny_model, sample_image_and_boxes):
    image, boxes = sample_image_and_boxes
    ref = torchvision_reference(tiny_model, image, boxes)
    pred = BoxConditionedMaskRCNN(tiny_model, crop_to_box=False)
    ours = pred.predict_probs([image_to_tensor(image)], [torch.as_tensor(boxes, dtype=torch.float32)])[0]
    assert torch.equal(ours["labels"], ref["labels"])
    torch.testing.assert_close(ours["scores"], ref["scores"])
    torch.testing.assert_close(ours["masks"], ref["masks"])                    # [N, 1, H, W] probabilities
    binary = pred.predict([image], [boxes])[0]
    assert np.array_equal(binary.masks, (ref["masks"][:, 0] > 0.5).numpy())
    np.testing.assert_allclose(binary.scores, ref["scores"].numpy(), rtol=1e-6)


def test_batched_images_equal_one_by_one(tiny_model, sample_image_and_boxes):
    image, boxes = sample_image_and_boxes
    flipped = np.ascontiguousarray(image[:, ::-1])                              # same size: no extra padding
    pred = BoxConditionedMaskRCNN(tiny_model)
    both = pred.predict([image, flipped], [boxes[:3], boxes[3:]])
    one = pred.predict([image], [boxes[:3]])[0]
    two = pred.predict([flipped], [boxes[3:]])[0]
    assert np.array_equal(both[0].masks, one.masks) and np.array_equal(both[1].masks, two.masks)
    np.testing.assert_allclose(both[1].scores, two.scores, rtol=1e-5)


def test_one_mask_per_box_inside_the_box(tiny_model, sample_image_and_boxes):
    image, boxes = sample_image_and_boxes
    out = BoxConditionedMaskRCNN(tiny_model).predict([image], [boxes])[0]
    h, w = image.shape[:2]
    assert out.masks.shape == (len(boxes), h, w) and out.masks.dtype == bool
    assert ((out.scores > 0) & (out.scores <= 1)).all() and (out.labels >= 1).all()
    for mask, box in zip(out.masks, boxes):
        r0, r1, c0, c1 = box_pixel_bounds(box, h, w)
        outside = mask.copy()
        outside[r0:r1, c0:c1] = False
        assert not outside.any()


def test_checkpoint_round_trip_gives_identical_masks(tiny_model, tmp_path, sample_image_and_boxes):
    image, boxes = sample_image_and_boxes
    path = tmp_path / "w.pth"
    torch.save(tiny_model.state_dict(), path)
    loaded = load_teacher(path, TINY_ARCH, min_size=TINY_MIN_SIZE, max_size=TINY_MAX_SIZE)
    assert loaded.roi_heads.box_predictor.cls_score.out_features == 5      # class count read from the file
    a = BoxConditionedMaskRCNN(tiny_model).predict([image], [boxes])[0]
    cfg = TeacherConfig(backend="maskrcnn", arch=TINY_ARCH, min_size=TINY_MIN_SIZE, max_size=TINY_MAX_SIZE)
    b = build_teacher(cfg, path.read_bytes(), checkpoint_name=str(path)).predict([image], [boxes])[0]
    assert np.array_equal(a.masks, b.masks) and np.array_equal(a.scores, b.scores)
    # a wrapped {"model": state_dict} checkpoint loads the same way
    torch.save({"model": tiny_model.state_dict()}, tmp_path / "wrapped.pth")
    c = BoxConditionedMaskRCNN(load_teacher(tmp_path / "wrapped.pth", TINY_ARCH, min_size=TINY_MIN_SIZE,
                                            max_size=TINY_MAX_SIZE)).predict([image], [boxes])[0]
    assert np.array_equal(a.masks, c.masks)


def test_checkpoint_with_wrong_shapes_names_parameter_and_file(tiny_model, tmp_path):
    state = tiny_model.state_dict()
    key = "backbone.body.layer1.0.conv1.weight"
    state[key] = torch.zeros(32, 64, 3, 3)
    path = tmp_path / "bad_shapes.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=rf"bad_shapes.pth: parameter '{key}' has shape \(32, 64, 3, 3\)"):
        load_teacher(path, TINY_ARCH)
    # a ResNet-18 checkpoint given to a ResNet-50 architecture
    good = tmp_path / "r18.pth"
    torch.save(tiny_model.state_dict(), good)
    with pytest.raises(CheckpointError, match=r"r18.pth: parameter 'backbone\.body\.layer1\.0\.conv1\.weight'"):
        load_teacher(good, "maskrcnn_resnet50_fpn")
    missing = tiny_model.state_dict()
    missing.pop("roi_heads.mask_predictor.mask_fcn_logits.weight")
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match=r"missing.pth.*missing parameters.*mask_fcn_logits"):
        load_teacher(tmp_path / "missing.pth", TINY_ARCH)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth"):
        load_teacher(tmp_path / "junk.pth", TINY_ARCH)


def test_box_backend_fills_the_clipped_box():
    image = np.zeros((40, 50, 3), np.uint8)
    boxes = np.array([[5, 6, 25, 30], [10.4, 0.5, 49.9, 12.2]])
    out = BoxFillPredictor().predict([image], [boxes])[0]
    assert mask_to_bbox(out.masks[0]) == [5.0, 6.0, 20.0, 24.0]               # integer box: exact
    assert mask_to_bbox(out.masks[1]) == [10.0, 0.0, 40.0, 13.0]              # floor/ceil extent
    assert out.masks[0].sum() == 20 * 24 and (out.scores == 1).all()


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2"])
def test_resnet50_architectures_build_offline_and_load_their_own_state(arch):
    from vloss.teacher.architectures import load_into, num_classes_from_state_dict

    model = build_maskrcnn(TeacherArchConfig(arch, num_classes=7, min_size=64, max_size=96))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert num_classes_from_state_dict(state, "mem") == 7
    fresh = build_maskrcnn(TeacherArchConfig(arch, num_classes=7, min_size=64, max_size=96))
    load_into(fresh, state, "mem")
    key = "roi_heads.mask_predictor.mask_fcn_logits.weight"
    assert torch.equal(fresh.state_dict()[key], state[key])
    with pytest.raises(ValueError, match="unknown teacher arch"):
        TeacherArchConfig("maskrcnn_swin", num_classes=7)


def test_memory_grows_with_box_areas_not_boxes_times_image(tiny_model):
    """60 small boxes on a 1200 x 1600 image: the output holds only the boxes' crops, and the numpy
    memory the prediction allocates stays a few image-sized buffers (the full-resolution paste
    held 60 x H x W)."""
    import tracemalloc

    h, w = 1200, 1600
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    x0 = rng.uniform(0, w - 60, 60)
    y0 = rng.uniform(0, h - 60, 60)
    boxes = np.stack([x0, y0, x0 + rng.uniform(8, 50, 60), y0 + rng.uniform(8, 50, 60)], 1)
    pred = BoxConditionedMaskRCNN(tiny_model)
    tracemalloc.start()
    out = pred.predict([image], [boxes])[0]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    extents = [box_pixel_bounds(b, h, w) for b in boxes]
    assert [c.shape for c in out.crops] == [(r1 - r0, c1 - c0) for r0, r1, c0, c1 in extents]
    assert sum(c.nbytes for c in out.crops) < 60 * 50 * 50
    assert peak < 4 * h * w < 60 * h * w  # numpy allocations: the image-sized buffers only
    full = out.mask(7)
    r0, r1, c0, c1 = extents[7]
    assert full.shape == (h, w) and not full[:r0].any() and not full[r1:].any() and not full[:, c1:].any()


def test_the_backend_table_says_which_backends_need_a_checkpoint():
    from vloss.teacher.config import BACKENDS, TeacherConfig

    assert set(BACKENDS) == {"maskrcnn", "mmdet", "box"}
    assert [TeacherConfig(backend=b, mmdet_config="x").needs_checkpoint for b in BACKENDS] == [True, True, False]
    with pytest.raises(ValueError, match=r"unknown backend 'nope'; choose one of maskrcnn, mmdet, box"):
        TeacherConfig(backend="nope")
