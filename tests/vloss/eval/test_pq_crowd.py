"""Crowd rules: the official rule by default (last crowd segment of a category), "all" on request.

The vectorised scorer is checked bit for bit against the loop reference
(:mod:`vloss.eval.pq_reference`) on random images with several crowd segments of one
category, and, where a checkout of the COCO panoptic API is importable, against it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from vloss.eval.__main__ import main
from vloss.eval.pq import load_panoptic_pairs, pq_compute
from vloss.eval.pq_png import read_panoptic_png
from vloss.eval.pq_reference import pq_compute_reference, pq_stats_reference
from vloss.eval.pq_stats import PQStat, pq_stats_single
from vloss.eval.pq_synthetic import random_panoptic_pair, write_synthetic_dataset

CATS = [{"id": 1, "name": "thing_a", "isthing": 1}, {"id": 2, "name": "stuff_b", "isthing": 0},
        {"id": 3, "name": "thing_c", "isthing": 1}]
# Two thing classes and a high crowd probability: most images hold several crowds of one class.
CROWDED = [{"id": 1, "name": "person", "isthing": 1}, {"id": 3, "name": "car", "isthing": 1},
           {"id": 149, "name": "road", "isthing": 0}]


def per_cat(stat: PQStat, cid: int) -> tuple:
    i = stat.cat_ids.index(cid)
    return int(stat.tp[i]), int(stat.fp[i]), int(stat.fn[i]), float(stat.iou[i])


def max_crowds_of_one_class(segments: list[dict]) -> int:
    counts: dict[int, int] = {}
    for s in segments:
        if s["iscrowd"]:
            counts[s["category_id"]] = counts.get(s["category_id"], 0) + 1
    return max(counts.values(), default=0)


def assert_same_bits(a: PQStat, b: PQStat) -> None:
    assert a.cat_ids == b.cat_ids
    for name in ("tp", "fp", "fn", "iou"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


# Two crowd regions of class 1 (ids 5 and 6), a non-crowd segment of class 1 (id 1), one
# prediction of class 1 on each.
GT = [[5, 5, 5, 5, 6, 6, 6, 6, 1, 1, 1, 1]]
PRED = [[10, 10, 10, 10, 11, 11, 11, 11, 12, 12, 12, 12]]
PRED_SEGS = [{"id": 10, "category_id": 1}, {"id": 11, "category_id": 1}, {"id": 12, "category_id": 1}]
CROWD_5 = {"id": 5, "category_id": 1, "iscrowd": 1}
CROWD_6 = {"id": 6, "category_id": 1, "iscrowd": 1}
PLAIN_1 = {"id": 1, "category_id": 1, "iscrowd": 0}


@pytest.mark.parametrize("scorer", [pq_stats_single, pq_stats_reference])
def test_only_the_last_crowd_segment_of_a_class_absorbs_by_default(scorer):
    # segments_info order [5, 6]: 6 is the crowd region; 10 lies on crowd 5 -> a false positive
    s = scorer(np.array(GT), [CROWD_5, CROWD_6, PLAIN_1], np.array(PRED), PRED_SEGS, CATS)
    assert per_cat(s, 1) == (1, 1, 0, 1.0)
    # reversed order [6, 5]: now 11 (on crowd 6) is the false positive
    s = scorer(np.array(GT), [CROWD_6, PLAIN_1, CROWD_5], np.array(PRED), PRED_SEGS, CATS)
    assert per_cat(s, 1) == (1, 1, 0, 1.0)
    # a later crowd of another class does not replace class 1's crowd region
    gt = [row + [7] for row in GT]
    pred = [row + [13] for row in PRED]
    s = scorer(np.array(gt), [CROWD_5, CROWD_6, PLAIN_1, {"id": 7, "category_id": 3, "iscrowd": 1}],
               np.array(pred), PRED_SEGS + [{"id": 13, "category_id": 3}], CATS)
    assert per_cat(s, 1) == (1, 1, 0, 1.0) and per_cat(s, 3) == (0, 0, 0, 0.0)


@pytest.mark.parametrize("scorer", [pq_stats_single, pq_stats_reference])
def test_crowd_rule_all_lets_every_crowd_segment_absorb(scorer):
    s = scorer(np.array(GT), [CROWD_5, CROWD_6, PLAIN_1], np.array(PRED), PRED_SEGS, CATS, crowd_rule="all")
    assert per_cat(s, 1) == (1, 0, 0, 1.0)


def test_which_crowd_is_last_decides_about_a_prediction_on_two_crowds():
    # 10 covers 3 pixels of crowd 5 and 2 of crowd 6 (5 pixels): only the region that counts
    # is compared with half its area
    gt = np.array([[5, 5, 5, 6, 6, 1, 1]])
    pred = np.array([[10, 10, 10, 10, 10, 12, 12]])
    segs = [{"id": 10, "category_id": 1}, {"id": 12, "category_id": 1}]
    last_6 = pq_stats_single(gt, [CROWD_5, CROWD_6, PLAIN_1], pred, segs, CATS)
    last_5 = pq_stats_single(gt, [CROWD_6, CROWD_5, PLAIN_1], pred, segs, CATS)
    assert per_cat(last_6, 1)[:3] == (1, 1, 0)  # 2/5 on the crowd region -> FP
    assert per_cat(last_5, 1)[:3] == (1, 0, 0)  # 3/5 -> ignored
    assert per_cat(pq_stats_single(gt, [CROWD_5, CROWD_6, PLAIN_1], pred, segs, CATS, crowd_rule="all"),
                   1)[:3] == (1, 0, 0)


def test_unknown_crowd_rule_is_refused():
    with pytest.raises(ValueError, match="crowd_rule"):
        pq_stats_single(np.array(GT), [CROWD_5, CROWD_6, PLAIN_1], np.array(PRED), PRED_SEGS, CATS,
                        crowd_rule="last")


def test_default_equals_the_reference_bit_for_bit_on_crowded_random_cases():
    rng = np.random.default_rng(2024)
    total, total_ref = PQStat.empty(CROWDED), PQStat.empty(CROWDED)
    several_crowds = rules_differ = 0
    for _ in range(250):
        h, w = int(rng.integers(4, 40)), int(rng.integers(4, 40))
        case = random_panoptic_pair(rng, h, w, CROWDED, crowd_prob=0.7, max_segments=10)
        several_crowds += max_crowds_of_one_class(case[1]) >= 2
        fast = pq_stats_single(*case, CROWDED)  # the default rule
        ref = pq_stats_reference(*case, CROWDED, crowd_rule="official")
        assert_same_bits(fast, ref)
        assert fast.summary(CROWDED) == ref.summary(CROWDED)  # PQ/SQ/RQ per class, bit for bit
        fast_all = pq_stats_single(*case, CROWDED, crowd_rule="all")
        assert_same_bits(fast_all, pq_stats_reference(*case, CROWDED, crowd_rule="all"))
        rules_differ += not np.array_equal(fast.fp, fast_all.fp)
        total += fast
        total_ref += ref
    # the cases are what the test is about: several crowds of a class, and the rules disagree
    assert several_crowds >= 100 and rules_differ >= 20, (several_crowds, rules_differ)
    assert total.tp.sum() > 100 and total.fp.sum() > 100 and total.fn.sum() > 50
    assert_same_bits(total, total_ref)
    assert total.summary(CROWDED) == total_ref.summary(CROWDED)


@pytest.fixture()
def crowded_files(tmp_path):
    return write_synthetic_dataset(tmp_path, num_images=10, height=30, width=40, seed=5, categories=CROWDED,
                                   crowd_prob=0.7, max_segments=10)


def _files(p) -> tuple:
    return p["gt_json"], p["gt_dir"], p["pred_json"], p["pred_dir"]


def test_files_and_cli_default_to_the_official_rule(crowded_files, capsys):
    official = pq_compute_reference(*_files(crowded_files), crowd_rule="official")
    every = pq_compute_reference(*_files(crowded_files), crowd_rule="all")
    assert official != every  # this data tells the rules apart
    for workers in (1, 2):
        assert pq_compute(*_files(crowded_files), workers=workers) == official
        assert pq_compute(*_files(crowded_files), workers=workers, crowd_rule="all") == every
    args = ["pq", "--gt-json", str(crowded_files["gt_json"]), "--gt-dir", str(crowded_files["gt_dir"]),
            "--pred-json", str(crowded_files["pred_json"]), "--pred-dir", str(crowded_files["pred_dir"]),
            "--workers", "1"]
    for extra, expected in (([], official), (["--crowd-rule", "official"], official),
                            (["--crowd-rule", "all"], every)):
        assert main(args + extra) == 0
        assert json.loads(capsys.readouterr().out) == expected
    with pytest.raises(SystemExit) as e:
        main(args + ["--crowd-rule", "last"])
    assert e.value.code == 2


def _official_api():
    """``panopticapi.evaluation`` from a local checkout, or skip (tests never use the network)."""
    for root in filter(None, [os.environ.get("PANOPTICAPI"), "/tmp/panopticapi"]):
        if (Path(root) / "panopticapi" / "evaluation.py").is_file():
            if root not in sys.path:
                sys.path.insert(0, root)
            return pytest.importorskip("panopticapi.evaluation")
    pytest.skip("no checkout of github.com/cocodataset/panopticapi (set PANOPTICAPI=path)")


def test_equals_the_official_api_per_image(crowded_files):
    evaluation = _official_api()
    gt = json.loads(crowded_files["gt_json"].read_text())
    pred = {a["image_id"]: a for a in json.loads(crowded_files["pred_json"].read_text())["annotations"]}
    categories = {c["id"]: c for c in gt["categories"]}
    pairs, cats = load_panoptic_pairs(*_files(crowded_files))
    theirs_total, ours_total = evaluation.PQStat(), PQStat.empty(cats)
    several_crowds = 0
    for ann, pair in zip(gt["annotations"], pairs):
        several_crowds += max_crowds_of_one_class(ann["segments_info"]) >= 2
        with contextlib.redirect_stdout(io.StringIO()):
            theirs = evaluation.pq_compute_single_core(0, [(ann, pred[ann["image_id"]])], str(crowded_files["gt_dir"]),
                                                       str(crowded_files["pred_dir"]), categories)
        ours = pq_stats_single(read_panoptic_png(pair.gt_png), pair.gt_segments, read_panoptic_png(pair.pred_png),
                               pair.pred_segments, cats)
        for i, cid in enumerate(ours.cat_ids):
            t = theirs[cid]
            assert (int(ours.tp[i]), int(ours.fp[i]), int(ours.fn[i]), float(ours.iou[i])) == \
                   (t.tp, t.fp, t.fn, float(t.iou)), (ann["image_id"], cid)
        theirs_total += theirs
        ours_total += ours
    assert several_crowds >= 3
    summary = ours_total.summary(cats)
    names = {c["id"]: c["name"] for c in gt["categories"]}
    for group, isthing in (("All", None), ("Things", True), ("Stuff", False)):
        result, per_class = theirs_total.pq_average(categories, isthing=isthing)
        assert result["n"] == summary[group]["n"]
        for k in ("pq", "sq", "rq"):  # the API sums classes in its own order: equal to rounding
            assert result[k] == pytest.approx(summary[group][k], rel=1e-12, abs=1e-15)
        if isthing is None:
            for cid, r in per_class.items():
                mine = summary["per_class"].get(names[cid], {"pq": 0.0, "sq": 0.0, "rq": 0.0})
                assert {k: float(r[k]) for k in ("pq", "sq", "rq")} == {k: mine[k] for k in ("pq", "sq", "rq")}
