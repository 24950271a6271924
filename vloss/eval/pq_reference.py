"""A deliberately plain PQ implementation: pure-Python loops over pixels and segments.

It restates the published per-image algorithm of the COCO panoptic API (Kirillov et al.,
"Panoptic Segmentation", CVPR 2019; ``pq_compute_single_core``) step by step, without
numpy tricks, so that tests can check the vectorised scorer of :mod:`vloss.eval.pq_stats`
against it bit for bit, and ``bench/pq.py`` can show the speed-up. It assumes
well-formed input (no validation beyond what the loops need).

Per image:

1. Count, pixel by pixel, every segment's area and every (gt id, pred id) overlap.
2. Visit the overlapping pairs in ascending (gt id, pred id) order. A pair of a
   non-crowd ground-truth segment and a prediction of the same category is a true
   positive when ``IoU > 0.5``, with ``union = pred area + gt area - overlap - (pred on
   VOID)``; its IoU is added to the category's sum in that visiting order.
3. Unmatched non-crowd ground-truth segments are false negatives; crowd segments are
   neither matched nor missed.
4. The crowd region of a category: ``"official"``, the last crowd segment of that
   category in ``segments_info`` order (the API keeps one per category, overwriting);
   ``"all"``, all of them.
5. An unmatched prediction is ignored when ``(pred on VOID + pred on the crowd region of
   its category) / pred area > 0.5``, and is a false positive otherwise.

Areas are pixel counts of the id maps (the API reads ground-truth areas from the JSON
``area`` field, equal to the pixel count in well-formed files).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from vloss.eval.pq import PanopticPair, load_panoptic_pairs
from vloss.eval.pq_png import read_panoptic_png
from vloss.eval.pq_stats import PQStat, check_crowd_rule, normalize_categories

VOID = 0


def pq_stats_reference(gt_ids: np.ndarray, gt_segments: list[Mapping], pred_ids: np.ndarray,
                       pred_segments: list[Mapping],
                       categories: Mapping[int, Mapping] | Iterable[Mapping], *,
                       crowd_rule: str = "official") -> PQStat:
    """PQ sums of one image, computed pixel by pixel and pair by pair.

    Args:
        gt_ids: [H, W] ground-truth segment ids (0 = VOID).
        gt_segments: ground-truth ``segments_info``.
        pred_ids: [H, W] predicted segment ids (0 = VOID).
        pred_segments: predicted ``segments_info``.
        categories: category records or ``{id: record}``.
        crowd_rule: ``"official"`` (the last crowd segment of a category absorbs
            predictions) or ``"all"`` (every crowd segment of the category does).
    """
    check_crowd_rule(crowd_rule)
    cats = normalize_categories(categories)
    stat = PQStat.empty(cats)
    col = {cid: i for i, cid in enumerate(stat.cat_ids)}
    gt_info = {int(s["id"]): s for s in gt_segments}
    pred_info = {int(s["id"]): s for s in pred_segments}

    # 1. Areas and overlaps, one pixel at a time.
    gt_area: dict[int, int] = {}
    pred_area: dict[int, int] = {}
    overlap: dict[tuple[int, int], int] = {}
    for gt_row, pred_row in zip(np.asarray(gt_ids).tolist(), np.asarray(pred_ids).tolist()):
        for g, p in zip(gt_row, pred_row):
            gt_area[g] = gt_area.get(g, 0) + 1
            pred_area[p] = pred_area.get(p, 0) + 1
            overlap[(g, p)] = overlap.get((g, p), 0) + 1

    # 2. Matching, pairs visited in ascending (gt id, pred id) order.
    matched_gt: set[int] = set()
    matched_pred: set[int] = set()
    for g, p in sorted(overlap):
        if g not in gt_info or p not in pred_info:  # VOID on either side
            continue
        gs, ps = gt_info[g], pred_info[p]
        if gs.get("iscrowd", 0) or gs["category_id"] != ps["category_id"]:
            continue
        inter = overlap[(g, p)]
        union = pred_area[p] + gt_area[g] - inter - overlap.get((VOID, p), 0)
        iou = inter / union
        if iou > 0.5:
            c = col[gs["category_id"]]
            stat.tp[c] += 1
            stat.iou[c] += iou
            matched_gt.add(g)
            matched_pred.add(p)

    # 3. Missed ground truth.
    for g, gs in gt_info.items():
        if g not in matched_gt and not gs.get("iscrowd", 0):
            stat.fn[col[gs["category_id"]]] += 1

    # 4. The crowd region of each category.
    crowd_region: dict[int, list[int]] = {}
    for gs in gt_segments:
        if gs.get("iscrowd", 0):
            if crowd_rule == "official":
                crowd_region[gs["category_id"]] = [int(gs["id"])]
            else:
                crowd_region.setdefault(gs["category_id"], []).append(int(gs["id"]))

    # 5. Unmatched predictions: ignored when mostly on VOID and its category's crowd region.
    for p, ps in pred_info.items():
        if p in matched_pred:
            continue
        ignored = overlap.get((VOID, p), 0)
        for g in crowd_region.get(ps["category_id"], []):
            ignored += overlap.get((g, p), 0)
        if ignored / pred_area[p] > 0.5:
            continue
        stat.fp[col[ps["category_id"]]] += 1
    return stat


def score_pair_reference(pair: PanopticPair, categories: Mapping[int, Mapping], gt_json: str = "",
                         pred_json: str = "", *, crowd_rule: str = "official") -> PQStat:
    """Read one pair of PNGs and score it with :func:`pq_stats_reference`."""
    gt_ids = read_panoptic_png(pair.gt_png, pair.image_id)  # [H, W]
    pred_ids = read_panoptic_png(pair.pred_png, pair.image_id)  # [H, W]
    return pq_stats_reference(gt_ids, pair.gt_segments, pred_ids, pair.pred_segments, categories,
                              crowd_rule=crowd_rule)


def pq_compute_reference(gt_json: str | Path, gt_dir: str | Path, pred_json: str | Path,
                         pred_dir: str | Path, *, crowd_rule: str = "official") -> dict:
    """Single-process, loop-based counterpart of :func:`vloss.eval.pq.pq_compute`.

    Args:
        gt_json, gt_dir: ground-truth panoptic JSON and PNG folder.
        pred_json, pred_dir: predicted panoptic JSON and PNG folder.
        crowd_rule: ``"official"`` or ``"all"`` (see :func:`pq_stats_reference`).
    """
    pairs, cats = load_panoptic_pairs(gt_json, gt_dir, pred_json, pred_dir)
    total = PQStat.empty(cats)
    for pair in pairs:
        total += score_pair_reference(pair, cats, crowd_rule=crowd_rule)
    return total.summary(cats)
