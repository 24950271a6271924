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
  VOID plus the crowd region of its own category.

Which crowd segments form "the crowd region of a category" is ``crowd_rule``:

* ``"official"`` (default): the COCO panoptic API's rule. It records one crowd segment per
  category, overwriting while it walks ``segments_info`` in order, so only the **last**
  crowd segment of each category in ``segments_info`` absorbs predictions; predictions
  lying on an earlier crowd segment of the same category are false positives.
* ``"all"``: every crowd segment of the category absorbs predictions (this scorer's rule
  before it followed the API). It differs from ``"official"`` only on images with two or
  more crowd segments of one category.

Areas: predicted areas are counted from the PNG, as the API does. Ground-truth areas are
counted from the PNG too, whereas the API reads the JSON ``area`` field; the two agree
whenever ``area`` is the segment's pixel count (as in COCO and files this project writes).

IoU sums are accumulated per image in ascending (ground-truth id, predicted id) order, the
order in which the API visits the pairs, so one image's sums are bit-identical to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

from vloss.data.errors import DataFormatError
from vloss.eval.pq_overlap import overlap_histogram

VOID = 0
CROWD_RULES = ("official", "all")


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


def check_crowd_rule(crowd_rule: str) -> str:
    """``crowd_rule`` if it is one of :data:`CROWD_RULES`, else ValueError."""
    if crowd_rule not in CROWD_RULES:
        raise ValueError(f"crowd_rule must be one of {CROWD_RULES}, got {crowd_rule!r}")
    return crowd_rule


def _segment_table(segments: list[Mapping], cats: Mapping[int, Mapping], source: str, image_id: Any,
                   *, crowd: bool, crowd_rule: str = "official",
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validated ``segments_info`` -> sorted ids [S], category ids [S], crowd flags [S],
    absorbing-crowd flags [S] (the crowd segments that ``crowd_rule`` lets absorb predictions)."""
    ids, cat_ids, crowds = [], [], []
    last_crowd: dict[int, int] = {}  # category id -> position of its last crowd segment
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
        is_crowd = bool(seg.get("iscrowd", 0)) if crowd else False
        if is_crowd:
            last_crowd[int(cat)] = k
        ids.append(sid)
        cat_ids.append(int(cat))
        crowds.append(is_crowd)
    crowd_arr = np.asarray(crowds, dtype=bool)
    if crowd_rule == "all":
        absorbs = crowd_arr.copy()
    else:
        absorbs = np.zeros(len(ids), dtype=bool)
        absorbs[list(last_crowd.values())] = True
    order = np.argsort(np.asarray(ids, dtype=np.int64), kind="stable")
    return (np.asarray(ids, dtype=np.int64)[order], np.asarray(cat_ids, dtype=np.int64)[order],
            crowd_arr[order], absorbs[order])


def _check_ids_match(png_ids: np.ndarray, seg_ids: np.ndarray, source: str, png_source: str,
                     image_id: Any) -> None:
    """Every non-VOID id in the PNG is in the JSON and every JSON segment has pixels.

    Args:
        png_ids: [U] sorted distinct ids of the map (VOID included if present).
        seg_ids: [S] sorted distinct ids of ``segments_info``.
    """
    png_ids = png_ids[png_ids != VOID]
    if png_ids.size == seg_ids.size and np.array_equal(png_ids, seg_ids):
        return
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
                    *, crowd_rule: str = "official", image_id: Any = None, gt_source: str = "<ground truth>",
                    pred_source: str = "<prediction>", gt_png: str | None = None,
                    pred_png: str | None = None) -> PQStat:
    """PQ sums of one image, from one pass over its pixels (:func:`overlap_histogram`).

    Args:
        gt_ids: [H, W] integer ground-truth segment ids (0 = VOID).
        gt_segments: ground-truth ``segments_info`` (``id``, ``category_id``, ``iscrowd``).
        pred_ids: [H, W] integer predicted segment ids (0 = VOID).
        pred_segments: predicted ``segments_info`` (``id``, ``category_id``).
        categories: all categories (list of records or ``{id: record}``).
        crowd_rule: ``"official"`` (only the last crowd segment of a category in
            ``gt_segments`` absorbs predictions, as the COCO panoptic API) or ``"all"``.
        image_id: used in error messages.
        gt_source, pred_source: JSON file names used in error messages.
        gt_png, pred_png: PNG file names used in error messages (default: the JSON names).

    Returns:
        PQStat over all ``categories``.

    Raises:
        DataFormatError: on a size mismatch, an id in a PNG missing from its JSON (or the
            reverse), a repeated or zero segment id, or an unknown category id.
        ValueError: an unknown ``crowd_rule``.
    """
    cats = normalize_categories(categories)
    return score_image(gt_ids, gt_segments, pred_ids, pred_segments, cats,
                       np.asarray(sorted(cats), dtype=np.int64), crowd_rule=check_crowd_rule(crowd_rule),
                       image_id=image_id, gt_source=gt_source, pred_source=pred_source,
                       gt_png=gt_png or gt_source, pred_png=pred_png or pred_source)


def score_image(gt_ids: np.ndarray, gt_segments: list[Mapping], pred_ids: np.ndarray,
                pred_segments: list[Mapping], cats: Mapping[int, Mapping], cat_index: np.ndarray, *,
                crowd_rule: str, image_id: Any, gt_source: str, pred_source: str, gt_png: str,
                pred_png: str, gt_mask: int | None = None, pred_mask: int | None = None) -> PQStat:
    """:func:`pq_stats_single` with its arguments already checked and normalised.

    For callers that score many images against one category list (the parallel scorer).

    Args:
        gt_ids, gt_segments, pred_ids, pred_segments: as :func:`pq_stats_single`.
        cats: ``{id: record}`` (from :func:`normalize_categories`).
        cat_index: [C] int64, ``sorted(cats)``.
        crowd_rule: one of :data:`CROWD_RULES`.
        image_id, gt_source, pred_source, gt_png, pred_png: names for error messages.
        gt_mask, pred_mask: id bits of raw PNG pixels (see :func:`overlap_histogram`).
    """
    gt_ids = np.asarray(gt_ids)
    pred_ids = np.asarray(pred_ids)
    if gt_ids.shape != pred_ids.shape or gt_ids.ndim != 2:
        raise DataFormatError(pred_png, f"prediction has size {pred_ids.shape[::-1]} (W, H) but the ground "
                              f"truth ({gt_png}) has {gt_ids.shape[::-1]}", field="file_name",
                              record=f"image_id={image_id}")
    # Pixels shared by every (gt id, pred id) pair, pairs in ascending (gt id, pred id) order.
    pg, pp, inter = overlap_histogram(gt_ids, pred_ids, gt_mask=gt_mask, pred_mask=pred_mask)  # [K] each
    return score_overlaps(pg, pp, inter, gt_segments, pred_segments, cats, cat_index, crowd_rule=crowd_rule,
                          image_id=image_id, gt_source=gt_source, pred_source=pred_source, gt_png=gt_png,
                          pred_png=pred_png)


def score_overlaps(pg: np.ndarray, pp: np.ndarray, inter: np.ndarray, gt_segments: list[Mapping],
                   pred_segments: list[Mapping], cats: Mapping[int, Mapping], cat_index: np.ndarray, *,
                   crowd_rule: str, image_id: Any, gt_source: str, pred_source: str, gt_png: str,
                   pred_png: str) -> PQStat:
    """PQ sums of one image from its joint histogram: matching, FN, FP (work per segment, not per pixel).

    Args:
        pg, pp, inter: [K] gt ids, pred ids and shared pixels of every overlapping pair, in
            ascending (gt id, pred id) order (:func:`overlap_histogram`).
        gt_segments, pred_segments: ``segments_info`` of the ground truth and the prediction.
        cats: ``{id: record}`` (from :func:`normalize_categories`).
        cat_index: [C] int64, ``sorted(cats)``.
        crowd_rule: one of :data:`CROWD_RULES`.
        image_id, gt_source, pred_source, gt_png, pred_png: names for error messages.
    """
    n_cats = len(cat_index)
    g_seg, g_cat, g_crowd, g_absorb = _segment_table(gt_segments, cats, gt_source, image_id, crowd=True,
                                                     crowd_rule=crowd_rule)  # [G]
    p_seg, p_cat, _, _ = _segment_table(pred_segments, cats, pred_source, image_id, crowd=False)  # [P]

    # The ids present in each map, with their areas; they must be the JSON's segments (plus VOID).
    first_g = np.ones(pg.size, dtype=bool)  # pg ascends: the first pair of every gt id
    first_g[1:] = pg[1:] != pg[:-1]
    png_g = pg[first_g]
    area_g = np.add.reduceat(inter, np.flatnonzero(first_g)) if pg.size else np.zeros(0, dtype=np.int64)
    png_p, inv_p = np.unique(pp, return_inverse=True)
    area_p = np.bincount(inv_p, weights=inter, minlength=png_p.size)
    _check_ids_match(png_g, g_seg, gt_source, gt_png, image_id)
    _check_ids_match(png_p, p_seg, pred_source, pred_png, image_id)
    g_area = area_g[png_g != VOID]  # [G], aligned with g_seg
    p_area = area_p[png_p != VOID]  # [P], aligned with p_seg
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
    # bincount adds the weights in array order: ascending (gt id, pred id), as the API does.
    c_match = np.searchsorted(cat_index, g_cat[gi[match]])
    tp = np.bincount(c_match, minlength=n_cats)
    iou_sum = np.bincount(c_match, weights=iou[match], minlength=n_cats)

    g_matched = np.zeros(g_seg.size, dtype=bool)
    g_matched[gi[match]] = True
    p_matched = np.zeros(p_seg.size, dtype=bool)
    p_matched[pi[match]] = True

    fn_mask = ~g_matched & ~g_crowd
    fn = np.bincount(np.searchsorted(cat_index, g_cat[fn_mask]), minlength=n_cats)

    # Predictions lying mostly on VOID or on the crowd region of their own class are not FPs.
    absorbed = p_void.copy()  # [P]
    on_crowd = same & g_absorb[gi]
    np.add.at(absorbed, pi[on_crowd], r_inter[on_crowd])
    fp_mask = ~p_matched & (absorbed / np.maximum(p_area, 1.0) <= 0.5)
    fp = np.bincount(np.searchsorted(cat_index, p_cat[fp_mask]), minlength=n_cats)
    return PQStat(tuple(cat_index.tolist()), tp=tp.astype(np.int64), fp=fp.astype(np.int64),
                  fn=fn.astype(np.int64), iou=iou_sum)
