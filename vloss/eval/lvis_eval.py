"""LVIS mask AP through the official lvis-api (``LVISEval``), on current NumPy.

The scoring is lvis-api's own (federated rules: only categories verified present or
absent in an image are scored there, not-exhaustive categories forgive false positives,
r/c/f frequency groups; every ground-truth image is scored, so an image with no results
simply contributes misses, while a result for an image or category outside the ground
truth is an error here rather than lvis-api's bare ``assert``). This module validates
the result file first, caps detections per image with a counted report, and runs
:class:`~vloss.eval.lvis_compat.LVISEvalCompat`.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path
from typing import Any, Sequence

from lvis import LVIS, LVISResults

from vloss.data.errors import DataFormatError
from vloss.eval.lvis_compat import LVISEvalCompat
from vloss.eval.mask_results import check_mask_results, load_results, none_if_undefined, renumber_annotation_ids

LVIS_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")


def load_lvis_gt(gt_json: str | Path | LVIS) -> LVIS:
    """An ``lvis.LVIS`` from a path (clear error when the file is missing or not LVIS)."""
    if isinstance(gt_json, LVIS):
        return gt_json
    path = Path(gt_json)
    if not path.is_file():
        raise DataFormatError(path, "LVIS annotation file not found")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            gt = LVIS(str(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:  # a binary file: name it too
        raise DataFormatError(path, f"not valid JSON ({e})") from None
    except (KeyError, AssertionError, TypeError) as e:
        raise DataFormatError(path, f"not an LVIS annotation file ({type(e).__name__}: {e})") from None
    if renumber_annotation_ids(gt.dataset):
        logging.getLogger(__name__).warning("%s: annotation ids <= 0 found; renumbered 1..N so that "
                                            "LVISEval can record their matches", path)
        gt._create_index()
    return gt


def lvis_mask_ap(gt_json: str | Path | LVIS, results: str | Path | list, max_dets: int = 300,
                 cat_ids: Sequence[int] | None = None) -> dict[str, Any]:
    """Mask AP of instance results on an LVIS split.

    Args:
        gt_json: LVIS annotation JSON (v0.5 or v1) or a loaded ``lvis.LVIS``.
        results: LVIS result JSON / list of ``{"image_id", "category_id",
            "segmentation": compressed RLE, "score"}``.
        max_dets: per-image cap (LVIS protocol: 300). Results beyond it are the lowest
            scoring ones and are dropped *and counted* (``"results"`` in the output);
            a negative value keeps all.
        cat_ids: average over these categories only (lvis-api's ``params.cat_ids``), e.g. the
            classes no training annotation names; None: all categories.

    Returns:
        ``{"AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf"}`` in [0, 1]
        (``None`` where undefined, e.g. no rare category present) plus ``"results"``
        counts (read / kept / dropped over ``max_dets``).

    Raises:
        DataFormatError: unknown image or category ids, malformed records, RLE sizes
            that do not match the image, empty results.
    """
    gt = load_lvis_gt(gt_json)
    anns, source = load_results(results)
    images = {img["id"]: img for img in gt.dataset["images"]}
    cat_ids_all = {c["id"] for c in gt.dataset["categories"]}
    kept, check = check_mask_results(anns, source, images, cat_ids_all, max_dets)
    if check.dropped_over_max_dets:
        logging.getLogger(__name__).warning(
            "%s: kept the top %d results per image; dropped %d results from %d images",
            source, max_dets, check.dropped_over_max_dets, check.images_truncated)
    cap = max_dets if max_dets is not None and max_dets >= 0 else -1
    lvis_logger = logging.getLogger("lvis.results")  # "Assuming user provided the results in correct
    level = lvis_logger.level                          # format": check_mask_results above did check them
    lvis_logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            dt = LVISResults(gt, kept, max_dets=cap)
    finally:
        lvis_logger.setLevel(level)
    with contextlib.redirect_stdout(io.StringIO()):
        ev = LVISEvalCompat(gt, dt, iou_type="segm")
        if cap >= 0:
            ev.params.max_dets = cap
        if cat_ids is not None:
            unknown = sorted(set(cat_ids) - cat_ids_all)
            if unknown or not cat_ids:
                raise ValueError(f"cat_ids must be a non-empty subset of the ground truth's categories; "
                                 f"unknown: {unknown[:10]}")
            ev.params.cat_ids = sorted(int(c) for c in cat_ids)
        ev.run()
    out: dict[str, Any] = {k: none_if_undefined(ev.results[k]) for k in LVIS_KEYS}
    out["results"] = check.as_dict()
    return out
