"""The MMDetection teacher (issue #23): config by name or file, model-zoo checkpoints loaded weights-only,
box-conditioned masks equal to mmdet's own mask prediction on the same boxes.

The network is mmdet's packaged ``mask-rcnn_r50_fpn_1x_coco`` made small for the CPU (ResNet-18,
5 classes, images resized to 192x128) and written as a YAML config, as a user would pass their own;
its random weights are saved by mmengine's own ``save_checkpoint`` in the model-zoo layout.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("mmdet", reason="the MMDetection teacher needs `make install-mmdet`")

from vloss.teacher import TeacherConfig, box_pixel_bounds  # noqa: E402
from vloss.teacher.config import build_teacher  # noqa: E402
from vloss.teacher.mmdet_predictor import (  # noqa: E402
    BoxConditionedMMDet,
    MMDetCheckpointError,
    build_mmdet_model,
    load_mmdet_checkpoint,
    resolve_config,
)

NUM_CLASSES = 5


@pytest.fixture(scope="module")
def small_config(tmp_path_factory) -> Path:
    """mmdet's packaged R50-FPN Mask R-CNN config, shrunk, dumped as the user's YAML file."""
    cfg = resolve_config("mask-rcnn_r50_fpn_1x_coco")
    cfg.model.backbone.depth = 18
    cfg.model.backbone.init_cfg = None  # never fetch ImageNet weights
    cfg.model.neck.in_channels = [64, 128, 256, 512]
    cfg.model.roi_head.bbox_head.num_classes = NUM_CLASSES
    cfg.model.roi_head.mask_head.num_classes = NUM_CLASSES
    for step in cfg.test_dataloader.dataset.pipeline:
        if step["type"] == "Resize":
            step["scale"] = (192, 128)
    path = tmp_path_factory.mktemp("mmdet_cfg") / "teacher.yaml"
    cfg.dump(str(path))
    return path


@pytest.fixture(scope="module")
def zoo_checkpoint(small_config, tmp_path_factory) -> Path:
    """Random weights in the layout of a model-zoo file written by mmengine's Runner: meta (with a
    NumPy seed and the dataset's classes), state_dict, message_hub (HistoryBuffers), optimizer."""
    from mmengine.logging import MessageHub
    from mmengine.runner.checkpoint import save_checkpoint, weights_to_cpu

    torch.manual_seed(0)
    model = build_mmdet_model(resolve_config(str(small_config)))
    hub = MessageHub.get_instance("vloss-test-hub")
    for it in range(3):
        hub.update_scalar("train/loss", 1.0 / (it + 1))
    hub.update_info("iter", 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    ckpt = {"meta": {"epoch": 12, "iter": 3, "seed": np.int64(42), "mmdet_version": "3.3.0",
                     "dataset_meta": {"classes": tuple(f"class{i}" for i in range(NUM_CLASSES))},
                     "time": "20260101_000000"},
            "state_dict": weights_to_cpu(model.state_dict()),
            "message_hub": hub.state_dict(),
            "optimizer": opt.state_dict()}
    path = tmp_path_factory.mktemp("mmdet_ckpt") / "mask-rcnn_r18_fpn_random.pth"
    save_checkpoint(ckpt, str(path))
    return path


def _images(world: Path, n: int = 3) -> tuple[list[np.ndarray], list[np.ndarray]]:
    o = world / "objects365"
    data = json.loads((o / "annotations" / "train.json").read_text())
    images, boxes = [], []
    for im in data["images"][:n]:
        anns = [a["bbox"] for a in data["annotations"] if a["image_id"] == im["id"]]
        images.append(np.asarray(Image.open(o / "images" / "train" / im["file_name"]).convert("RGB")))
        boxes.append(np.array([[x, y, x + w, y + h] for x, y, w, h in anns], dtype=np.float32).reshape(-1, 4))
    return images, boxes


def test_a_model_zoo_file_loads_through_the_user_path_and_equals_the_in_memory_model(small_config, zoo_checkpoint,
                                                                                   world):
    images, boxes = _images(world)
    torch.manual_seed(0)
    in_memory = BoxConditionedMMDet(build_mmdet_model(resolve_config(str(small_config))))
    loaded = build_teacher(TeacherConfig(backend="mmdet", mmdet_config=str(small_config)), str(zoo_checkpoint),
                           checkpoint_name=zoo_checkpoint.name)
    assert isinstance(loaded, BoxConditionedMMDet)
    a, b = in_memory.predict(images, boxes), loaded.predict(images, boxes)
    total = 0
    for x, y, bx in zip(a, b, boxes):
        assert len(x) == len(y) == len(bx)
        np.testing.assert_array_equal(x.masks, y.masks)
        np.testing.assert_allclose(x.scores, y.scores, rtol=1e-6)
        np.testing.assert_array_equal(x.labels, y.labels)
        total += int(x.masks.sum())
    assert total > 0  # not all empty


def test_box_conditioned_masks_equal_mmdets_own_mask_prediction_on_the_same_boxes(small_config, zoo_checkpoint,
                                                                                   world):
    teacher = build_teacher(TeacherConfig(backend="mmdet", mmdet_config=str(small_config)), str(zoo_checkpoint))
    images, boxes = _images(world)
    ours = teacher.predict(images, boxes)
    reference = teacher.reference_masks(images, boxes)  # roi_head.predict_mask, full-image paste
    mixed = 0
    for out, ref, bx, im in zip(ours, reference, boxes, images):
        h, w = im.shape[:2]
        assert ref.shape == (len(bx), h, w)
        for k, box in enumerate(bx):
            r0, r1, c0, c1 = box_pixel_bounds(box, h, w)
            inside = np.zeros((h, w), dtype=bool)
            inside[r0:r1, c0:c1] = True
            np.testing.assert_array_equal(out.mask(k), ref[k] & inside)  # pixel-equal inside the box
            assert not (out.mask(k) & ~inside).any()                     # nothing outside it
            mixed += int(0 < out.area(k) < inside.sum())
        assert ((out.labels >= 1) & (out.labels <= NUM_CLASSES)).all()
        assert ((out.scores > 0) & (out.scores <= 1)).all()
    assert mixed > 0  # some masks are neither empty nor the whole box: the comparison means something


def test_a_file_that_would_run_code_is_refused(small_config, tmp_path):
    class Exploit:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.pth"
    torch.save({"meta": {}, "state_dict": {}, "x": Exploit()}, path)
    model = build_mmdet_model(resolve_config(str(small_config)))
    with pytest.raises(MMDetCheckpointError, match="never loaded"):
        load_mmdet_checkpoint(model, path.read_bytes(), path.name)
    assert not (tmp_path / "pwned").exists()


def test_a_checkpoint_of_another_config_is_named_in_one_line(small_config, zoo_checkpoint):
    cfg = resolve_config(str(small_config))
    cfg.model.roi_head.bbox_head.num_classes = NUM_CLASSES + 2
    cfg.model.roi_head.mask_head.num_classes = NUM_CLASSES + 2
    with pytest.raises(MMDetCheckpointError, match=r"has shape .*\(another number of classes"):
        load_mmdet_checkpoint(build_mmdet_model(cfg), zoo_checkpoint.read_bytes(), zoo_checkpoint.name)


def test_configs_by_name_by_data_file_and_python_only_when_trusted(small_config, tmp_path):
    assert resolve_config("mask-rcnn_r50_fpn_1x_coco").model.type == "MaskRCNN"
    assert resolve_config("mask-rcnn_r50_fpn_1x_coco.py").model.backbone.depth == 50
    with pytest.raises(FileNotFoundError, match="did you mean"):
        resolve_config("mask-rcnn_r50_fpn_1x_cocoo")
    py = tmp_path / "teacher.py"
    py.write_text("model = dict(type='MaskRCNN')\n")
    with pytest.raises(ValueError, match="trust_config"):
        resolve_config(str(py))
    assert resolve_config(str(py), trust_code=True).model.type == "MaskRCNN"
    bad = tmp_path / "bad.yaml"
    bad.write_text("!!python/object/apply:os.system ['true']\n")
    with pytest.raises(ValueError, match="not a readable config"):
        resolve_config(str(bad))
    with pytest.raises(ValueError, match="mmdet backend needs --mmdet-config"):
        TeacherConfig(backend="mmdet")


def test_detectors_other_than_mask_rcnn_are_refused():
    cfg = resolve_config("faster-rcnn_r50_fpn_1x_coco")
    with pytest.raises(ValueError, match="must be a Mask R-CNN"):
        build_mmdet_model(cfg)


def test_pseudo_mask_shards_match_the_torchvision_backends_in_everything_but_the_masks(
        ray_session, synthetic_source, tiny_checkpoint, small_config, zoo_checkpoint, tmp_path):
    """Both backends through the whole job: the same schema, rows, annotation ids and boxes; every
    mask inside its box; the mmdet shard's masks agree with the plain predictor's."""
    import pyarrow.parquet as pq
    from pycocotools import mask as mask_utils

    from pipelines.common.pseudo_mask_format import iter_records
    from pipelines.pseudo_masks.config import PseudoMaskJobConfig
    from pipelines.pseudo_masks.job import run_pseudo_masks
    from tests.fixtures_teacher import TINY_ARCH, TINY_MAX_SIZE, TINY_MIN_SIZE

    common = dict(annotations=str(synthetic_source.annotations), images=str(synthetic_source.images), limit=4,
                  rows_per_shard=2, batch_size=2)
    tv = PseudoMaskJobConfig(out=str(tmp_path / "tv"), checkpoint=str(tiny_checkpoint), **common,
                             teacher=TeacherConfig(backend="maskrcnn", arch=TINY_ARCH, min_size=TINY_MIN_SIZE,
                                                   max_size=TINY_MAX_SIZE))
    mm = PseudoMaskJobConfig(out=str(tmp_path / "mm"), checkpoint=str(zoo_checkpoint), **common,
                             teacher=TeacherConfig(backend="mmdet", mmdet_config=str(small_config)))
    run_pseudo_masks(tv)
    manifest = run_pseudo_masks(mm)
    assert manifest["counts"]["images"] == 4
    tv_files = sorted((tmp_path / "tv").rglob("*.parquet"))
    mm_files = sorted((tmp_path / "mm").rglob("*.parquet"))
    assert len(tv_files) == len(mm_files) == 2
    for a, b in zip(tv_files, mm_files):
        assert pq.read_schema(a).remove_metadata() == pq.read_schema(b).remove_metadata()
    tv_rec = {r["image_id"]: r for r in iter_records(tmp_path / "tv", decode_masks=False)}
    mm_rec = {r["image_id"]: r for r in iter_records(tmp_path / "mm", decode_masks=False)}
    assert tv_rec.keys() == mm_rec.keys() and len(mm_rec) == 4
    teacher = build_teacher(mm.teacher, str(zoo_checkpoint))
    for image_id, rec in mm_rec.items():
        other = tv_rec[image_id]
        assert [i["id"] for i in rec["instances"]] == [i["id"] for i in other["instances"]]
        assert [i["bbox"] for i in rec["instances"]] == [i["bbox"] for i in other["instances"]]
        image = np.asarray(Image.open(io.BytesIO((synthetic_source.images / rec["file_name"]).read_bytes()))
                           .convert("RGB"))
        h, w = image.shape[:2]
        boxes = np.array([[x, y, x + bw, y + bh] for x, y, bw, bh in (i["bbox"] for i in rec["instances"])])
        direct = teacher.predict([image], [boxes])[0]
        for k, inst in enumerate(rec["instances"]):
            mask = mask_utils.decode(inst["segmentation"]).astype(bool)
            r0, r1, c0, c1 = box_pixel_bounds(boxes[k], h, w)
            assert not mask[:r0].any() and not mask[r1:].any() and not mask[:, :c0].any() and not mask[:, c1:].any()
            # the actor batches two images (padded to one size) on one thread; random weights put many
            # mask probabilities next to 0.5, so a few pixels may flip: near-equal, not bit-equal
            agree = (mask == direct.mask(k)).mean()
            assert agree > 0.999, (image_id, k, agree)
            assert inst["score"] == pytest.approx(float(direct.scores[k]), abs=1e-3)


def test_a_killed_mmdet_job_rerun_is_exact(ray_session, synthetic_source, small_config, zoo_checkpoint, tmp_path):
    """The driver of ``python -m jobs.pseudo_masks --backend mmdet`` is SIGKILLed after its first
    shard; re-running the same command keeps what was committed and completes a set equal to an
    uninterrupted run's, row for row."""
    import signal
    import subprocess
    import sys
    import time

    from pipelines.common.pseudo_mask_format import iter_records
    from pipelines.pseudo_masks.config import PseudoMaskJobConfig
    from pipelines.pseudo_masks.job import run_pseudo_masks

    reference = tmp_path / "reference"
    run_pseudo_masks(PseudoMaskJobConfig(annotations=str(synthetic_source.annotations),
                                         images=str(synthetic_source.images), out=str(reference),
                                         checkpoint=str(zoo_checkpoint), rows_per_shard=1, batch_size=1,
                                         teacher=TeacherConfig(backend="mmdet", mmdet_config=str(small_config))))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "jobs.pseudo_masks", "--backend", "mmdet", "--mmdet-config", str(small_config),
           "--checkpoint", str(zoo_checkpoint), "--annotations", str(synthetic_source.annotations),
           "--images", str(synthetic_source.images), "--out", str(out), "--set", "rows_per_shard=1",
           "--set", "batch_size=1"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    root = Path(__file__).resolve().parents[3]
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 400
        while time.time() < deadline and proc.poll() is None and not list(out.rglob("*.parquet")):
            time.sleep(0.1)
        assert proc.poll() is None, f"the job ended (rc {proc.returncode}) before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    total = len(list(reference.rglob("*.parquet")))
    assert 1 <= len(list(out.rglob("*.parquet"))) < total + 1
    rerun = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert list(iter_records(out, decode_masks=False)) == list(iter_records(reference, decode_masks=False))
