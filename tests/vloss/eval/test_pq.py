"""PQ scorer: real sample, hand-computed cases, brute-force agreement, parallel files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from vloss.data.masks import id2rgb
from vloss.eval.pq import pq_compute
from vloss.eval.pq_reference import pq_compute_reference, pq_stats_reference
from vloss.eval.pq_stats import PQStat, pq_stats_single
from vloss.eval.pq_synthetic import SYNTHETIC_CATEGORIES, random_panoptic_pair, write_synthetic_dataset

CATS = [{"id": 1, "name": "thing_a", "isthing": 1}, {"id": 2, "name": "stuff_b", "isthing": 0},
        {"id": 3, "name": "thing_c", "isthing": 1}]


def stats(gt, gs, pred, ps, cats=CATS) -> PQStat:
    return pq_stats_single(np.array(gt), gs, np.array(pred), ps, cats)


def per_cat(stat: PQStat, cid: int) -> tuple:
    i = stat.cat_ids.index(cid)
    return int(stat.tp[i]), int(stat.fp[i]), int(stat.fn[i]), float(stat.iou[i])


def test_sample_ground_truth_against_itself_is_perfect(shared_data):
    d = shared_data / "coco-panoptic-sample"
    gt_json, gt_dir = d / "panoptic_examples.json", d / "panoptic_examples"
    res = pq_compute(gt_json, gt_dir, gt_json, gt_dir, workers=1)
    for group in ("All", "Things", "Stuff"):
        assert res[group]["pq"] == res[group]["sq"] == res[group]["rq"] == 1.0
    n_cats = len({s["category_id"] for a in json.loads(gt_json.read_text())["annotations"]
                  for s in a["segments_info"]})
    assert res["All"]["n"] == n_cats
    # person is in both images: 26 non-crowd segments, all TPs, the crowd regions not counted
    assert res["per_class"]["person"] == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "tp": 26, "fp": 0, "fn": 0}


def test_void_excluded_from_iou_and_half_void_rule():
    # GT: seg 1 (thing_a) on 0-3, seg 2 (stuff_b) on 4-7, VOID on 8-11.
    gt = [[1, 1, 1, 1, 2, 2, 2, 2, 0, 0, 0, 0]]
    pred = [[10, 10, 10, 10, 11, 11, 12, 12, 12, 12, 13, 13]]
    gs = [{"id": 1, "category_id": 1, "iscrowd": 0}, {"id": 2, "category_id": 2, "iscrowd": 0}]
    ps = [{"id": 10, "category_id": 1}, {"id": 11, "category_id": 2}, {"id": 12, "category_id": 2},
          {"id": 13, "category_id": 2}]
    s = stats(gt, ps=ps, gs=gs, pred=pred)
    assert per_cat(s, 1) == (1, 0, 0, 1.0)
    # 11: IoU 2/4 = 0.5 is not > 0.5 -> FP; 12: IoU (2)/(4+4-2-2) = 0.5 -> no match, and
    # exactly half of it is VOID, which is not "more than half" -> FP; 13 is all VOID -> ignored.
    assert per_cat(s, 2) == (0, 2, 1, 0.0)
    out = s.summary(CATS)
    assert out["All"] == {"pq": 0.5, "sq": 0.5, "rq": 0.5, "n": 2}
    assert out["Things"]["pq"] == 1.0 and out["Stuff"]["pq"] == 0.0


def test_void_part_of_prediction_does_not_lower_iou():
    gt = [[1, 1, 0, 0, 0, 0]]
    pred = [[10, 10, 10, 10, 10, 10]]
    s = stats(gt, [{"id": 1, "category_id": 1}], pred, [{"id": 10, "category_id": 1}])
    # plain IoU would be 2/6; with the VOID part removed it is 2/2
    assert per_cat(s, 1) == (1, 0, 0, 1.0)


def test_crowd_absorbs_only_its_own_class():
    gt = [[1, 1, 1, 3, 3, 3],
          [1, 1, 1, 3, 3, 3]]
    pred = [[10, 10, 10, 11, 11, 12],
            [10, 10, 13, 13, 13, 12]]
    gs = [{"id": 1, "category_id": 1, "iscrowd": 0}, {"id": 3, "category_id": 1, "iscrowd": 1}]
    ps = [{"id": 10, "category_id": 1}, {"id": 11, "category_id": 1}, {"id": 12, "category_id": 3},
          {"id": 13, "category_id": 1}]
    s = stats(gt, gs, pred, ps)
    # 10 vs 1: inter 5, union 5 + 6 - 5 = 6. 11: all on the crowd -> ignored. 13: 2 of 3
    # pixels on the crowd -> ignored. 12: on a crowd of another class -> FP of class 3.
    assert per_cat(s, 1)[:3] == (1, 0, 0) and per_cat(s, 1)[3] == pytest.approx(5 / 6, abs=1e-15)
    assert per_cat(s, 3) == (0, 1, 0, 0.0)
    out = s.summary(CATS)
    assert out["All"]["pq"] == pytest.approx((5 / 6 + 0) / 2, abs=1e-15)
    assert out["Stuff"] == {"pq": None, "sq": None, "rq": None, "n": 0}


def test_crowd_never_matches_and_is_never_missed():
    s = stats([[3, 3, 3, 3]], [{"id": 3, "category_id": 1, "iscrowd": 1}],
              [[10, 10, 10, 10]], [{"id": 10, "category_id": 1}])
    assert per_cat(s, 1) == (0, 0, 0, 0.0)
    assert s.summary(CATS)["All"]["n"] == 0


def test_split_segments():
    gt = [[1] * 8]
    s = stats(gt, [{"id": 1, "category_id": 1}], [[10] * 5 + [11] * 3],
              [{"id": 10, "category_id": 1}, {"id": 11, "category_id": 1}])
    assert per_cat(s, 1) == (1, 1, 0, 5 / 8)
    c = s.summary(CATS)["per_class"]["thing_a"]
    assert c["pq"] == pytest.approx(0.625 / 1.5) and c["sq"] == 0.625 and c["rq"] == pytest.approx(2 / 3)
    # an even split: neither half has IoU > 0.5
    s = stats(gt, [{"id": 1, "category_id": 1}], [[10] * 4 + [11] * 4],
              [{"id": 10, "category_id": 1}, {"id": 11, "category_id": 1}])
    assert per_cat(s, 1) == (0, 2, 1, 0.0)


def test_class_mismatch_never_matches():
    s = stats([[1, 1, 1, 1]], [{"id": 1, "category_id": 1}], [[10, 10, 10, 10]], [{"id": 10, "category_id": 3}])
    assert per_cat(s, 1) == (0, 0, 1, 0.0) and per_cat(s, 3) == (0, 1, 0, 0.0)
    assert s.summary(CATS)["All"] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 2}


def test_vectorised_matches_brute_force_on_random_cases():
    rng = np.random.default_rng(1234)
    total, total_ref = PQStat.empty(SYNTHETIC_CATEGORIES), PQStat.empty(SYNTHETIC_CATEGORIES)
    for _ in range(300):
        h, w = int(rng.integers(1, 20)), int(rng.integers(1, 20))
        case = random_panoptic_pair(rng, h, w)
        fast = pq_stats_single(*case, SYNTHETIC_CATEGORIES)
        ref = pq_stats_reference(*case, SYNTHETIC_CATEGORIES)
        for name in ("tp", "fp", "fn"):
            np.testing.assert_array_equal(getattr(fast, name), getattr(ref, name))
        np.testing.assert_allclose(fast.iou, ref.iou, rtol=0, atol=1e-9)
        total += fast
        total_ref += ref
    assert total.tp.sum() > 50 and total.fp.sum() > 50 and total.fn.sum() > 50  # the cases are varied
    a, b = total.summary(SYNTHETIC_CATEGORIES), total_ref.summary(SYNTHETIC_CATEGORIES)
    for group in ("All", "Things", "Stuff"):
        for k in ("pq", "sq", "rq"):
            assert math.isclose(a[group][k], b[group][k], abs_tol=1e-9)
        assert 0.0 < a[group]["pq"] < 1.0


def test_parallel_files_match_reference(tmp_path):
    p = write_synthetic_dataset(tmp_path, num_images=12, height=24, width=32, seed=7)
    args = (p["gt_json"], p["gt_dir"], p["pred_json"], p["pred_dir"])
    ref = pq_compute_reference(*args)
    for workers in (1, 2):
        res = pq_compute(*args, workers=workers)
        assert res["per_class"].keys() == ref["per_class"].keys()
        for name, c in res["per_class"].items():
            assert (c["tp"], c["fp"], c["fn"]) == tuple(ref["per_class"][name][k] for k in ("tp", "fp", "fn"))
        for group in ("All", "Things", "Stuff"):
            assert res[group]["n"] == ref[group]["n"]
            for k in ("pq", "sq", "rq"):
                assert math.isclose(res[group][k], ref[group][k], abs_tol=1e-9)


def test_shifted_real_sample_matches_reference(shared_data, tmp_path):
    d = shared_data / "coco-panoptic-sample"
    gt = json.loads((d / "panoptic_examples.json").read_text())
    (tmp_path / "pred").mkdir()
    for ann in gt["annotations"]:
        ids = np.asarray(Image.open(d / "panoptic_examples" / ann["file_name"]).convert("RGB")).astype(np.int64)
        ids = ids[..., 0] + 256 * ids[..., 1] + 65536 * ids[..., 2]
        shifted = np.roll(ids, (3, -4), axis=(0, 1))
        Image.fromarray(id2rgb(shifted)).save(tmp_path / "pred" / ann["file_name"])
    args = (d / "panoptic_examples.json", d / "panoptic_examples", d / "panoptic_examples.json", tmp_path / "pred")
    res, ref = pq_compute(*args, workers=1), pq_compute_reference(*args)
    assert 0.2 < res["All"]["pq"] < 1.0
    for group in ("All", "Things", "Stuff"):
        for k in ("pq", "sq", "rq"):
            assert math.isclose(res[group][k], ref[group][k], abs_tol=1e-9)
