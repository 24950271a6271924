"""COCO mask AP on the real COCO sample (pycocotools COCOeval)."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from vloss.data.errors import DataFormatError
from vloss.data.masks import encode_rle, segmentation_to_mask
from vloss.eval.coco_eval import COCO_KEYS, coco_mask_ap


def det_path(shared_data):
    return shared_data / "coco-panoptic-sample" / "panoptic_coco_detection_format.json"


def results_from_gt(data: dict, rng: np.random.Generator | None = None) -> list[dict]:
    imgs = {i["id"]: i for i in data["images"]}
    out = []
    for a in data["annotations"]:
        if a["iscrowd"]:
            continue
        im = imgs[a["image_id"]]
        m = segmentation_to_mask(a["segmentation"], im["height"], im["width"])
        score = 1.0
        if rng is not None:
            m = np.roll(m, (int(rng.integers(-6, 7)), int(rng.integers(-6, 7))), axis=(0, 1))
            score = float(rng.random())
        out.append({"image_id": a["image_id"], "category_id": a["category_id"], "score": score,
                    "segmentation": encode_rle(m)})
    return out


def test_ground_truth_as_results_scores_one(shared_data):
    data = json.loads(det_path(shared_data).read_text())
    res = coco_mask_ap(det_path(shared_data), results_from_gt(data))
    for k in COCO_KEYS:
        assert res[k] == pytest.approx(1.0, abs=1e-12), k
    assert res["results"]["num_kept"] == sum(not a["iscrowd"] for a in data["annotations"])


def test_annotation_id_zero_is_renumbered(shared_data):
    """The sample's first annotation has id 0, which COCOeval can never mark as matched."""
    data = json.loads(det_path(shared_data).read_text())
    assert min(a["id"] for a in data["annotations"]) == 0
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(det_path(shared_data)))
        ev = COCOeval(gt, gt.loadRes(results_from_gt(data)), iouType="segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[0] < 1.0  # what calling pycocotools directly gives on this file


def test_perturbed_equals_cocoeval_on_renumbered_copy(shared_data, tmp_path):
    data = json.loads(det_path(shared_data).read_text())
    for k, a in enumerate(data["annotations"]):
        a["id"] = k + 1
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    res = results_from_gt(data, np.random.default_rng(2))
    ours = coco_mask_ap(path, [dict(r) for r in res])
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
        ev = COCOeval(gt, gt.loadRes(res), iouType="segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert 0.05 < ours["AP"] < 0.95
    for k, v in zip(COCO_KEYS, ev.stats[:6]):
        assert (ours[k] is None) if v < 0 else ours[k] == pytest.approx(v, abs=1e-12), k


def test_unknown_image_is_rejected(shared_data):
    data = json.loads(det_path(shared_data).read_text())
    res = results_from_gt(data)
    res[1]["image_id"] = 5
    with pytest.raises(DataFormatError, match=r"\[results\[1\], image_id=5\] field 'image_id': unknown image id"):
        coco_mask_ap(det_path(shared_data), res)


def test_cli(shared_data, tmp_path):
    data = json.loads(det_path(shared_data).read_text())
    rfile = tmp_path / "r.json"
    rfile.write_text(json.dumps(results_from_gt(data)))
    proc = subprocess.run([sys.executable, "-m", "vloss.eval", "coco", "--gt-json", str(det_path(shared_data)),
                           "--results", str(rfile)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert all(out[k] == pytest.approx(1.0) for k in COCO_KEYS)
