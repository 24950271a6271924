"""LVIS mask AP: the NumPy compat, agreement with lvis-api and pycocotools, GT-as-results."""

from __future__ import annotations

import contextlib
import copy
import io
import json

import numpy as np
import pytest
from lvis import LVIS, LVISEval, LVISResults
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from vloss.data.errors import DataFormatError
from vloss.data.masks import encode_rle, segmentation_to_mask
from vloss.eval.lvis_compat import LVISEvalCompat, numpy_float_alias
from vloss.eval.lvis_eval import LVIS_KEYS, lvis_mask_ap


def lvis_path(shared_data):
    return shared_data / "lvis-v0.5-val-100" / "lvis_val_100.json"


def gt_results(dataset: dict) -> list[dict]:
    """Every ground-truth instance as a result: RLE mask, score 1."""
    imgs = {i["id"]: i for i in dataset["images"]}
    out = []
    for a in dataset["annotations"]:
        im = imgs[a["image_id"]]
        m = segmentation_to_mask(a["segmentation"], im["height"], im["width"])
        out.append({"image_id": a["image_id"], "category_id": a["category_id"], "score": 1.0,
                    "segmentation": encode_rle(m)})
    return out


def perturbed_results(dataset: dict, seed: int) -> list[dict]:
    """Shifted masks, random scores, missing instances, and false positives."""
    rng = np.random.default_rng(seed)
    imgs = {i["id"]: i for i in dataset["images"]}
    cat_ids = [c["id"] for c in dataset["categories"]]
    out = []
    for a in dataset["annotations"]:
        if rng.random() < 0.15:
            continue
        im = imgs[a["image_id"]]
        m = segmentation_to_mask(a["segmentation"], im["height"], im["width"])
        m = np.roll(m, (int(rng.integers(-4, 5)), int(rng.integers(-4, 5))), axis=(0, 1))
        out.append({"image_id": a["image_id"], "category_id": a["category_id"],
                    "score": float(rng.random()), "segmentation": encode_rle(m), "bbox": [0, 0, 1, 1]})
        if rng.random() < 0.3:  # a confident false positive of another category
            neg = im.get("neg_category_ids") or cat_ids
            out.append({"image_id": a["image_id"], "category_id": int(rng.choice(neg)),
                        "score": float(rng.random()), "segmentation": encode_rle(m)})
    return out


def test_plain_lvis_eval_still_breaks_on_this_numpy(shared_data, tmp_path):
    """Proves the compat is needed (and tells us to drop it once lvis is fixed)."""
    assert "float" not in np.__dict__
    path = tmp_path / "lvis_style.json"
    path.write_text(json.dumps(_coco_style_lvis(shared_data)))
    gt = LVIS(str(path))
    res = gt_results(gt.dataset)
    ev = LVISEval(gt, LVISResults(gt, res), iou_type="segm")
    with pytest.raises(AttributeError, match="float"):
        ev.run()
    ev = LVISEvalCompat(gt, LVISResults(gt, res), iou_type="segm")
    ev.run()
    assert 0.0 < ev.results["AP"] <= 1.0
    assert "float" not in np.__dict__, "the alias must not outlive the evaluation"


def test_alias_is_scoped_and_nestable():
    with numpy_float_alias():
        assert np.float is float
        with numpy_float_alias():
            assert np.float is float
        assert np.float is float
    assert "float" not in np.__dict__
    with pytest.raises(RuntimeError):
        with numpy_float_alias():
            raise RuntimeError("boom")
    assert "float" not in np.__dict__


def _coco_style_lvis(shared_data) -> dict:
    """The COCO sample's instances as an LVIS file where no federated rule applies:
    no crowd, every absent category is a verified negative, nothing non-exhaustive."""
    src = json.loads((shared_data / "coco-panoptic-sample" / "panoptic_coco_detection_format.json").read_text())
    anns = [dict(a, id=k + 1) for k, a in enumerate(x for x in src["annotations"] if not x["iscrowd"])]
    cats = [dict(c, frequency="rcf"[c["id"] % 3]) for c in src["categories"]]
    all_ids = {c["id"] for c in cats}
    images = []
    for im in src["images"]:
        present = {a["category_id"] for a in anns if a["image_id"] == im["id"]}
        images.append(dict(im, neg_category_ids=sorted(all_ids - present), not_exhaustive_category_ids=[]))
    return {"images": images, "annotations": anns, "categories": cats}


def test_compat_lvis_equals_cocoeval_where_both_define_ap(shared_data, tmp_path):
    data = _coco_style_lvis(shared_data)
    path = tmp_path / "lvis_style.json"
    path.write_text(json.dumps(data))
    results = perturbed_results(data, seed=5)
    ours = lvis_mask_ap(path, copy.deepcopy(results), max_dets=300)

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(path))
        dt = coco.loadRes([{k: v for k, v in r.items() if k != "bbox"} for r in results])
        ev = COCOeval(coco, dt, iouType="segm")
        ev.params.maxDets = [1, 10, 300]
        ev.evaluate()
        ev.accumulate()
    prec5 = ev.eval["precision"]  # [T, R, K, A, M]; summarize() itself only reads maxDets=100

    def coco_ap(t=slice(None), a=0):
        p = prec5[t, :, :, a, 2]
        return p[p > -1].mean() if (p > -1).any() else -1

    assert 0.1 < ours["AP"] < 0.95
    expected = [coco_ap(), coco_ap(0), coco_ap(5), coco_ap(a=1), coco_ap(a=2), coco_ap(a=3)]
    assert np.allclose(ev.params.iouThrs[[0, 5]], [0.5, 0.75])
    for k, v in zip(("AP", "AP50", "AP75", "APs", "APm", "APl"), expected):
        assert (ours[k] == pytest.approx(v, abs=1e-12)) if v >= 0 else ours[k] is None, (k, ours[k], v)
    # frequency groups: COCOeval restricted to that group's categories
    prec = ev.eval["precision"][:, :, :, 0, 2]  # [T, R, K] area=all, maxDets=300
    for key, freq in (("APr", "r"), ("APc", "c"), ("APf", "f")):
        idx = [i for i, cid in enumerate(ev.params.catIds) if "rcf"[cid % 3] == freq]
        p = prec[:, :, idx]
        expected = p[p > -1].mean() if (p > -1).any() else None
        assert (ours[key] is None) if expected is None else ours[key] == pytest.approx(expected, abs=1e-12), key


@pytest.mark.slow
def test_scorer_equals_lvis_api_on_perturbed_results(shared_data):
    path = lvis_path(shared_data)
    data = json.loads(path.read_text())
    results = perturbed_results(data, seed=11)
    ours = lvis_mask_ap(path, copy.deepcopy(results))

    direct = [{k: v for k, v in r.items() if k != "bbox"} for r in results]
    gt = LVIS(str(path))
    with numpy_float_alias():
        ev = LVISEval(gt, LVISResults(gt, direct, max_dets=300), iou_type="segm")
        ev.run()
    assert 0.05 < ours["AP"] < 0.95
    for k in LVIS_KEYS:
        v = ev.results[k]
        assert (ours[k] is None) if v == -1 else ours[k] == pytest.approx(v, abs=1e-12), k
    assert ours["results"]["num_results"] == len(results)


@pytest.mark.slow
def test_ground_truth_as_results_scores_one(shared_data):
    path = lvis_path(shared_data)
    data = json.loads(path.read_text())
    res = lvis_mask_ap(path, gt_results(data))
    for k in LVIS_KEYS:
        assert res[k] == pytest.approx(1.0, abs=1e-12), k


def test_max_dets_truncation_is_counted(tmp_path, shared_data):
    data = _coco_style_lvis(shared_data)
    path = tmp_path / "lvis_style.json"
    path.write_text(json.dumps(data))
    res = gt_results(data)
    counts = {i["id"]: sum(r["image_id"] == i["id"] for r in res) for i in data["images"]}
    img0 = max(counts, key=counts.get)
    extra = [dict(r, score=0.01) for r in res if r["image_id"] == img0] * 3
    out = lvis_mask_ap(path, res + extra, max_dets=counts[img0])
    # the low-scoring copies are the ones dropped, so the score stays perfect
    assert out["results"] == {"num_results": len(res) + len(extra), "num_kept": len(res),
                              "dropped_over_max_dets": len(extra), "images_truncated": 1}
    assert out["AP"] == pytest.approx(1.0)


@pytest.mark.parametrize("field,value,expect", [
    ("image_id", 123456789, "unknown image id"),
    ("category_id", 99999, "unknown category id"),
    ("segmentation", [[0, 0, 1, 1, 1, 0]], "compressed RLE"),
    ("score", "high", "finite number"),
])
def test_bad_results_name_file_record_and_field(tmp_path, shared_data, field, value, expect):
    data = _coco_style_lvis(shared_data)
    path = tmp_path / "lvis_style.json"
    path.write_text(json.dumps(data))
    res = gt_results(data)
    res[3] = dict(res[3], **{field: value})
    rfile = tmp_path / "results.json"
    rfile.write_text(json.dumps(res))
    with pytest.raises(DataFormatError) as e:
        lvis_mask_ap(path, rfile)
    msg = str(e.value)
    assert str(rfile) in msg and "results[3]" in msg and f"field '{field}'" in msg and expect in msg


def test_rle_of_wrong_size_is_rejected(tmp_path, shared_data):
    data = _coco_style_lvis(shared_data)
    path = tmp_path / "lvis_style.json"
    path.write_text(json.dumps(data))
    res = gt_results(data)
    res[0]["segmentation"] = encode_rle(np.ones((5, 5), dtype=bool))
    with pytest.raises(DataFormatError, match=r"RLE size \[5, 5\] differs"):
        lvis_mask_ap(path, res)


def test_cli_prints_lvis_metrics(tmp_path, shared_data):
    import subprocess
    import sys

    data = _coco_style_lvis(shared_data)
    gt = tmp_path / "lvis_style.json"
    gt.write_text(json.dumps(data))
    rfile = tmp_path / "results.json"
    rfile.write_text(json.dumps(perturbed_results(data, seed=9)))
    out = tmp_path / "metrics.json"
    proc = subprocess.run([sys.executable, "-m", "vloss.eval", "lvis", "--gt-json", str(gt), "--results", str(rfile),
                           "--max-dets", "300", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    assert printed == json.loads(out.read_text()) == lvis_mask_ap(gt, rfile)
    assert set(LVIS_KEYS) <= set(printed)
    assert all(printed[k] is None or 0.0 <= printed[k] <= 1.0 for k in LVIS_KEYS)


def test_ap_over_a_category_subset_equals_cocoeval_on_those_categories(shared_data, tmp_path):
    """``cat_ids`` (the seen / unseen split of the demo): AP averaged over a subset equals COCOeval's
    precision averaged over the same categories."""
    data = _coco_style_lvis(shared_data)
    path = tmp_path / "lvis_style.json"
    path.write_text(json.dumps(data))
    results = perturbed_results(data, seed=3)
    present = sorted({a["category_id"] for a in data["annotations"]})
    subset = present[::2]
    ours = lvis_mask_ap(path, copy.deepcopy(results), max_dets=300, cat_ids=subset)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(path))
        dt = coco.loadRes([{k: v for k, v in r.items() if k != "bbox"} for r in results])
        ev = COCOeval(coco, dt, iouType="segm")
        ev.params.maxDets = [1, 10, 300]
        ev.evaluate()
        ev.accumulate()
    idx = [i for i, cid in enumerate(ev.params.catIds) if cid in subset]
    p = ev.eval["precision"][:, :, idx, 0, 2]
    assert ours["AP"] == pytest.approx(p[p > -1].mean(), abs=1e-12)
    whole = lvis_mask_ap(path, copy.deepcopy(results), max_dets=300)
    assert ours["AP"] != pytest.approx(whole["AP"], abs=1e-6)
    with pytest.raises(ValueError, match="subset"):
        lvis_mask_ap(path, copy.deepcopy(results), cat_ids=[999999])
