"""A deliberately plain PQ implementation: pure-Python loops over pixels and segments.

It restates the rules of :mod:`vloss.eval.pq_stats` one by one, without numpy tricks, so
that tests can check the vectorised scorer against it and ``bench/pq.py`` can measure
the speed-up. It assumes well-formed input (no validation beyond what the loops need).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from vloss.eval.pq import PanopticPair, load_panoptic_pairs, read_panoptic_png
from vloss.eval.pq_stats import PQStat, normalize_categories

VOID = 0


def pq_stats_reference(gt_ids: np.ndarray, gt_segments: list[Mapping], pred_ids: np.ndarray,
                       pred_segments: list[Mapping],
                       categories: Mapping[int, Mapping] | Iterable[Mapping]) -> PQStat:
    """PQ sums of one image, computed pixel by pixel and pair by pair.

    Args:
        gt_ids: [H, W] ground-truth segment ids (0 = VOID).
        gt_segments: ground-truth ``segments_info``.
        pred_ids: [H, W] predicted segment ids (0 = VOID).
        pred_segments: predicted ``segments_info``.
        categories: category records or ``{id: record}``.
    """
    cats = normalize_categories(categories)
    stat = PQStat.empty(cats)
    col = {cid: i for i, cid in enumerate(stat.cat_ids)}
    gt_info = {int(s["id"]): s for s in gt_segments}
    pred_info = {int(s["id"]): s for s in pred_segments}

    # Count areas and overlaps one pixel at a time.
    gt_area: dict[int, int] = {}
    pred_area: dict[int, int] = {}
    overlap: dict[tuple[int, int], int] = {}
    for gt_row, pred_row in zip(np.asarray(gt_ids).tolist(), np.asarray(pred_ids).tolist()):
        for g, p in zip(gt_row, pred_row):
            gt_area[g] = gt_area.get(g, 0) + 1
            pred_area[p] = pred_area.get(p, 0) + 1
            overlap[(g, p)] = overlap.get((g, p), 0) + 1

    matched_gt: set[int] = set()
    matched_pred: set[int] = set()
    for g, gs in gt_info.items():
        if gs.get("iscrowd", 0):
            continue
        for p, ps in pred_info.items():
            if gs["category_id"] != ps["category_id"]:
                continue
            inter = overlap.get((g, p), 0)
            if inter == 0:
                continue
            on_void = overlap.get((VOID, p), 0)
            union = gt_area.get(g, 0) + pred_area.get(p, 0) - inter - on_void
            iou = inter / union
            if iou > 0.5:
                c = col[gs["category_id"]]
                stat.tp[c] += 1
                stat.iou[c] += iou
                matched_gt.add(g)
                matched_pred.add(p)

    for g, gs in gt_info.items():
        if g not in matched_gt and not gs.get("iscrowd", 0):
            stat.fn[col[gs["category_id"]]] += 1

    for p, ps in pred_info.items():
        if p in matched_pred:
            continue
        ignored = overlap.get((VOID, p), 0)
        for g, gs in gt_info.items():
            if gs.get("iscrowd", 0) and gs["category_id"] == ps["category_id"]:
                ignored += overlap.get((g, p), 0)
        if ignored / pred_area[p] > 0.5:
            continue
        stat.fp[col[ps["category_id"]]] += 1
    return stat


def score_pair_reference(pair: PanopticPair, categories: Mapping[int, Mapping], gt_json: str = "",
                         pred_json: str = "") -> PQStat:
    """Read one pair of PNGs and score it with :func:`pq_stats_reference`."""
    gt_ids = read_panoptic_png(pair.gt_png, pair.image_id)  # [H, W]
    pred_ids = read_panoptic_png(pair.pred_png, pair.image_id)  # [H, W]
    return pq_stats_reference(gt_ids, pair.gt_segments, pred_ids, pair.pred_segments, categories)


def pq_compute_reference(gt_json: str | Path, gt_dir: str | Path, pred_json: str | Path,
                         pred_dir: str | Path) -> dict:
    """Single-process, loop-based counterpart of :func:`vloss.eval.pq.pq_compute`.

    Args:
        gt_json, gt_dir: ground-truth panoptic JSON and PNG folder.
        pred_json, pred_dir: predicted panoptic JSON and PNG folder.
    """
    pairs, cats = load_panoptic_pairs(gt_json, gt_dir, pred_json, pred_dir)
    total = PQStat.empty(cats)
    for pair in pairs:
        total += score_pair_reference(pair, cats)
    return total.summary(cats)
