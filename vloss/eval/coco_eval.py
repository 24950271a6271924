"""COCO mask AP through pycocotools' ``COCOeval`` for COCO-style instance sets."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from vloss.data.errors import DataFormatError
from vloss.eval.mask_results import check_mask_results, load_results, none_if_undefined, renumber_annotation_ids

COCO_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def load_coco_gt(gt_json: str | Path | COCO) -> COCO:
    """A ``pycocotools.coco.COCO`` from a path (clear error when missing or malformed)."""
    if isinstance(gt_json, COCO):
        return gt_json
    path = Path(gt_json)
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DataFormatError(path, "COCO annotation file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:  # a binary file: name it too
        raise DataFormatError(path, f"not valid JSON ({e})") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise DataFormatError(path, f"missing or non-list '{key}'", field=key)
    if renumber_annotation_ids(data):
        logging.getLogger(__name__).warning("%s: annotation ids <= 0 found; renumbered 1..N so that "
                                            "COCOeval can record their matches", path)
    gt = COCO()
    gt.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def summarize_ap(ev: COCOeval) -> list[float]:
    """AP, AP50, AP75, APs, APm, APl at the largest ``maxDets``, as ``COCOeval.summarize``.

    ``summarize`` itself asks for ``maxDets=100`` for AP/APs/APm/APl whatever
    ``params.maxDets`` holds, and reports -1 when 100 is not among them; reading the
    accumulated precision directly keeps any cap usable.

    Args:
        ev: an evaluated and accumulated ``COCOeval``.
    """
    prec = ev.eval["precision"]  # [T, R, K, A, M]
    iou = np.asarray(ev.params.iouThrs)
    area = {lbl: i for i, lbl in enumerate(ev.params.areaRngLbl)}

    def mean_valid(p: np.ndarray) -> float:
        p = p[p > -1]
        return float(p.mean()) if p.size else -1.0

    def at(t: float | None = None, a: str = "all") -> float:
        p = prec[..., area[a], -1]  # [T, R, K] at the largest maxDets
        if t is not None:
            p = p[np.isclose(iou, t)]
        return mean_valid(p)

    return [at(), at(0.5), at(0.75), at(a="small"), at(a="medium"), at(a="large")]


def coco_mask_ap(gt_json: str | Path | COCO, results: str | Path | list, max_dets: int = 100) -> dict[str, Any]:
    """COCO mask AP (``iouType="segm"``) of instance results.

    Args:
        gt_json: COCO instances JSON (or a loaded ``COCO``).
        results: result JSON / list of ``{"image_id", "category_id", "segmentation":
            compressed RLE, "score"}``.
        max_dets: per-image cap, the COCO protocol's 100; more results per image are the
            lowest-scoring ones, dropped and counted in ``"results"``.

    Returns:
        ``{"AP", "AP50", "AP75", "APs", "APm", "APl"}`` in [0, 1] (``None`` where
        undefined) plus ``"results"`` counts.
    """
    gt = load_coco_gt(gt_json)
    anns, source = load_results(results)
    kept, check = check_mask_results(anns, source, gt.imgs, set(gt.cats), max_dets)
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(kept)
        ev = COCOeval(gt, dt, iouType="segm")
        ev.params.maxDets = [1, 10, max_dets]
        ev.evaluate()
        ev.accumulate()
    out: dict[str, Any] = {k: none_if_undefined(v) for k, v in zip(COCO_KEYS, summarize_ap(ev))}
    out["results"] = check.as_dict()
    return out
