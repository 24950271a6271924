"""Panoptic quality accumulators and the per-image PQ matcher (COCO panoptic semantics).

The rules follow the COCO panoptic API's ``pq_compute`` (Kirillov et al., "Panoptic
Segmentation", CVPR 2019):

* id 0 in a PNG is VOID (unlabeled). VOID ground-truth pixels are removed from a
  prediction's area when its IoU is computed, and never make a prediction wrong.
* A ground-truth segment and a predicted segment match iff they have the same category,
  the ground truth is not a crowd region and ``IoU > 0.5``; segments inside one PNG do not
  overlap, so such a match is unique.
* An unmatched ground-truth segment is a false negative unless it is a crowd region.
* An unmatched prediction is a false positive unless more than half of its area lies on
  VOID plus crowd regions of its own category.

One deliberate difference from the reference API: when an image holds several crowd
segments of one category, all of them absorb predictions (the API keeps only the last
one it saw). COCO never has more than one crowd segment per category and image, so
scores on COCO are identical.

Ground-truth areas are counted from the PNG, not read from the JSON ``area`` field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

from vloss.data.errors import DataFormatError
from vloss.data.masks import OFFSET

VOID = 0


def normalize_categories(categories: Mapping[int, Mapping] | Iterable[Mapping]) -> dict[int, dict]:
    """Categories as ``{id: record}`` whatever form they came in.

    Args:
        categories: a list of COCO category records (``id``, ``name``, ``isthing``) or a
            mapping from id to such a record.
    """
    if isinstance(categories, Mapping):
        return {int(k): dict(v) for k, v in categories.items()}
    return {int(c["id"]): dict(c) for c in categories}


@dataclass
class PQStat:
    """Per-category PQ sums over any number of images.

    ``cat_ids`` fixes the order of the dense per-category arrays; two stats merge only
    when they share it.
    """

    cat_ids: tuple[int, ...]
    tp: np.ndarray = field(default=None)  # [C] int64
    fp: np.ndarray = field(default=None)  # [C] int64
    fn: np.ndarray = field(default=None)  # [C] int64
    iou: np.ndarray = field(default=None)  # [C] float64, summed IoU of true positives

    def __post_init__(self) -> None:
        c = len(self.cat_ids)
        for name, dtype in (("tp", np.int64), ("fp", np.int64), ("fn", np.int64), ("iou", np.float64)):
            if getattr(self, name) is None:
                setattr(self, name, np.zeros(c, dtype=dtype))

    @classmethod
    def empty(cls, categories: Mapping[int, Mapping] | Iterable[Mapping]) -> "PQStat":
        """Zero stats over ``categories`` (ids sorted ascending)."""
        return cls(tuple(sorted(normalize_categories(categories))))

    def __iadd__(self, other: "PQStat") -> "PQStat":
        if other.cat_ids != self.cat_ids:
            raise ValueError("cannot merge PQ stats over different category lists")
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.iou += other.iou
        return self

    def _average(self, keep: np.ndarray) -> dict[str, Any]:
        """PQ/SQ/RQ averaged over the categories in ``keep`` that occur at all."""
        n_all = self.tp + self.fp + self.fn  # [C]
        use = keep & (n_all > 0)
        n = int(use.sum())
        if n == 0:
            return {"pq": None, "sq": None, "rq": None, "n": 0}
        tp, fp, fn, iou = self.tp[use], self.fp[use], self.fn[use], self.iou[use]
        denom = tp + 0.5 * fp + 0.5 * fn
        pq = iou / denom
        sq = np.where(tp > 0, iou / np.maximum(tp, 1), 0.0)
        rq = tp / denom
        return {"pq": float(pq.mean()), "sq": float(sq.mean()), "rq": float(rq.mean()), "n": n}

    def summary(self, categories: Mapping[int, Mapping] | Iterable[Mapping]) -> dict[str, Any]:
        """``{"All", "Things", "Stuff", "per_class"}`` as the PQ CLI prints it.

        Averages are over categories with at least one TP, FP or FN (as the COCO API);
        an empty group reports ``None`` values and ``n = 0``. ``per_class`` lists only
        categories that occur, keyed by name (``"name#id"`` if a name repeats).

        Args:
            categories: the category records (need ``isthing`` and ideally ``name``).
        """
        cats = normalize_categories(categories)
        missing = [c for c in self.cat_ids if c not in cats]
        if missing:
            raise ValueError(f"categories lack ids {missing[:5]} used by these stats")
        isthing = np.array([bool(cats[c].get("isthing", 0)) for c in self.cat_ids], dtype=bool)
        out: dict[str, Any] = {
            "All": self._average(np.ones_like(isthing)),
            "Things": self._average(isthing),
            "Stuff": self._average(~isthing),
        }
        names = [str(cats[c].get("name", c)) for c in self.cat_ids]
        repeated = {n for n in names if names.count(n) > 1}
        per_class: dict[str, dict] = {}
        for i, cid in enumerate(self.cat_ids):
            tp, fp, fn = int(self.tp[i]), int(self.fp[i]), int(self.fn[i])
            if tp + fp + fn == 0:
                continue
            denom = tp + 0.5 * fp + 0.5 * fn
            key = f"{names[i]}#{cid}" if names[i] in repeated else names[i]
            per_class[key] = {
                "pq": float(self.iou[i] / denom),
                "sq": float(self.iou[i] / tp) if tp else 0.0,
                "rq": float(tp / denom),
                "tp": tp, "fp": fp, "fn": fn,
            }
        out["per_class"] = per_class
        return out


def _segment_table(segments: list[Mapping], cats: Mapping[int, Mapping], source: str,
                   image_id: Any, *, crowd: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated ``segments_info`` -> sorted ids [S], category ids [S], crowd flags [S]."""
    ids, cat_ids, crowds = [], [], []
    seen: set[int] = set()
    for k, seg in enumerate(segments):
        where = f"image_id={image_id}, segments_info[{k}]"
        try:
            sid = int(seg["id"])
        except (KeyError, TypeError, ValueError):
            raise DataFormatError(source, "segment has no integer id", field="id", record=where) from None
        where = f"image_id={image_id}, segment_id={sid}"
        if sid == VOID:
            raise DataFormatError(source, "segment id 0 is reserved for VOID", field="id", record=where)
        if sid in seen:
            raise DataFormatError(source, "segment id appears twice in segments_info", field="id", record=where)
        seen.add(sid)
        cat = seg.get("category_id")
        if cat is None or int(cat) not in cats:
            raise DataFormatError(source, f"unknown category id {cat!r}", field="category_id", record=where)
        ids.append(sid)
        cat_ids.append(int(cat))
        crowds.append(bool(seg.get("iscrowd", 0)) if crowd else False)
    order = np.argsort(np.asarray(ids, dtype=np.int64), kind="stable")
    return (np.asarray(ids, dtype=np.int64)[order], np.asarray(cat_ids, dtype=np.int64)[order],
            np.asarray(crowds, dtype=bool)[order])


def _check_ids_match(png_ids: np.ndarray, seg_ids: np.ndarray, source: str, png_source: str,
                     image_id: Any) -> None:
    """Every non-VOID id in the PNG is in the JSON and every JSON segment has pixels."""
    png_ids = png_ids[png_ids != VOID]
    only_png = np.setdiff1d(png_ids, seg_ids)
    if only_png.size:
        raise DataFormatError(png_source, f"segment ids {only_png[:10].tolist()} are in the PNG but not "
                              f"in the JSON's segments_info ({source})", field="segments_info",
                              record=f"image_id={image_id}, segment_id={int(only_png[0])}")
    only_json = np.setdiff1d(seg_ids, png_ids)
    if only_json.size:
        raise DataFormatError(source, f"segment ids {only_json[:10].tolist()} are in segments_info but "
                              f"have no pixels in the PNG ({png_source})", field="segments_info",
                              record=f"image_id={image_id}, segment_id={int(only_json[0])}")


def pq_stats_single(gt_ids: np.ndarray, gt_segments: list[Mapping], pred_ids: np.ndarray,
                    pred_segments: list[Mapping], categories: Mapping[int, Mapping] | Iterable[Mapping],
                    *, image_id: Any = None, gt_source: str = "<ground truth>",
                    pred_source: str = "<prediction>", gt_png: str | None = None,
                    pred_png: str | None = None) -> PQStat:
    """PQ sums of one image, vectorised over pixels with one ``np.unique`` of pair keys.

    Args:
        gt_ids: [H, W] integer ground-truth segment ids (0 = VOID).
        gt_segments: ground-truth ``segments_info`` (``id``, ``category_id``, ``iscrowd``).
        pred_ids: [H, W] integer predicted segment ids (0 = VOID).
        pred_segments: predicted ``segments_info`` (``id``, ``category_id``).
        categories: all categories (list of records or ``{id: record}``).
        image_id: used in error messages.
        gt_source, pred_source: JSON file names used in error messages.
        gt_png, pred_png: PNG file names used in error messages (default: the JSON names).

    Returns:
        PQStat over all ``categories``.

    Raises:
        DataFormatError: on a size mismatch, an id in a PNG missing from its JSON (or the
            reverse), a repeated or zero segment id, or an unknown category id.
    """
    cats = normalize_categories(categories)
    stat = PQStat.empty(cats)
    cat_index = np.asarray(stat.cat_ids, dtype=np.int64)  # [C] sorted
    gt_png = gt_png or gt_source
    pred_png = pred_png or pred_source
    gt_ids = np.asarray(gt_ids)
    pred_ids = np.asarray(pred_ids)
    if gt_ids.shape != pred_ids.shape or gt_ids.ndim != 2:
        raise DataFormatError(pred_png, f"prediction has size {pred_ids.shape[::-1]} (W, H) but the ground "
                              f"truth ({gt_png}) has {gt_ids.shape[::-1]}", field="file_name",
                              record=f"image_id={image_id}")

    g_seg, g_cat, g_crowd = _segment_table(gt_segments, cats, gt_source, image_id, crowd=True)  # [G]
    p_seg, p_cat, _ = _segment_table(pred_segments, cats, pred_source, image_id, crowd=False)  # [P]

    # Intersection of every (gt id, pred id) pair that shares a pixel.
    keys = gt_ids.astype(np.int64).ravel() * OFFSET + pred_ids.astype(np.int64).ravel()  # [H*W]
    pair_keys, inter = np.unique(keys, return_counts=True)  # [K], [K]
    pg, pp = pair_keys // OFFSET, pair_keys % OFFSET  # [K] gt id, pred id

    png_g, inv_g = np.unique(pg, return_inverse=True)
    png_p, inv_p = np.unique(pp, return_inverse=True)
    _check_ids_match(png_g, g_seg, gt_source, gt_png, image_id)
    _check_ids_match(png_p, p_seg, pred_source, pred_png, image_id)
    area_g_png = np.bincount(inv_g, weights=inter)  # [len(png_g)]
    area_p_png = np.bincount(inv_p, weights=inter)
    g_area = area_g_png[np.searchsorted(png_g, g_seg)] if g_seg.size else np.zeros(0)  # [G]
    p_area = p_void = np.zeros(0)
    if p_seg.size:
        p_area = area_p_png[np.searchsorted(png_p, p_seg)]  # [P]
        p_void = np.zeros(p_seg.size)  # [P] pixels of each prediction on GT VOID
        on_void = (pg == VOID) & (pp != VOID)
        p_void[np.searchsorted(p_seg, pp[on_void])] = inter[on_void]

    # Pairs of two real segments of the same category.
    real = (pg != VOID) & (pp != VOID)
    gi = np.searchsorted(g_seg, pg[real])  # [R] index into gt table
    pi = np.searchsorted(p_seg, pp[real])  # [R] index into pred table
    r_inter = inter[real].astype(np.float64)
    same = g_cat[gi] == p_cat[pi]  # [R]

    cand = same & ~g_crowd[gi]
    union = p_area[pi] + g_area[gi] - r_inter - p_void[pi]  # [R]
    iou = np.where(cand, r_inter / np.maximum(union, 1.0), 0.0)
    match = cand & (iou > 0.5)
    c_match = np.searchsorted(cat_index, g_cat[gi[match]])
    stat.tp += np.bincount(c_match, minlength=len(cat_index))
    stat.iou += np.bincount(c_match, weights=iou[match], minlength=len(cat_index))

    g_matched = np.zeros(g_seg.size, dtype=bool)
    g_matched[gi[match]] = True
    p_matched = np.zeros(p_seg.size, dtype=bool)
    p_matched[pi[match]] = True

    fn_mask = ~g_matched & ~g_crowd
    stat.fn += np.bincount(np.searchsorted(cat_index, g_cat[fn_mask]), minlength=len(cat_index))

    # Predictions lying mostly on VOID or on crowd regions of their own class are not FPs.
    absorbed = p_void.copy()  # [P]
    on_crowd = same & g_crowd[gi]
    np.add.at(absorbed, pi[on_crowd], r_inter[on_crowd])
    fp_mask = ~p_matched & (absorbed / np.maximum(p_area, 1.0) <= 0.5)
    stat.fp += np.bincount(np.searchsorted(cat_index, p_cat[fp_mask]), minlength=len(cat_index))
    return stat
