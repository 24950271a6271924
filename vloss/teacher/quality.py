"""Pseudo-mask quality: mean mask IoU against true masks.

Pseudo masks are matched to true masks **by annotation id** (the pseudo-mask job
keeps the box's annotation id). The truth is any COCO JSON with ``segmentation``
(polygons, RLE or uncompressed RLE): the synthetic world's
``objects365/truth/train_masks.json`` or the real sample's
``panoptic_coco_detection_format.json``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from vloss.data.errors import DataFormatError
from vloss.data.masks import decode_rle, segmentation_to_mask


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two ``[H, W]`` bool masks (1.0 when both are empty)."""
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    union = np.logical_or(a, b).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(a, b).sum() / union)


@dataclass
class QualityReport:
    """Mean mask IoU of pseudo masks vs true masks.

    Args:
        mean_iou: mean over matched masks.
        count: matched masks.
        per_category: ``{category_id: {"name", "mean_iou", "count"}}``.
        unmatched: pseudo masks whose annotation id has no true mask.
        ious: ``{annotation_id: iou}``.
    """

    mean_iou: float
    count: int
    per_category: dict[int, dict] = field(default_factory=dict)
    unmatched: int = 0
    ious: dict[int, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"mean_iou": self.mean_iou, "count": self.count, "unmatched": self.unmatched,
                "per_category": {str(k): v for k, v in sorted(self.per_category.items())}}


def evaluate_masks(records: Iterable[dict], truth: dict, truth_source: str) -> QualityReport:
    """Mean IoU of pseudo masks against a COCO JSON with true segmentations.

    Args:
        records: pseudo-mask records (``pipelines.common.pseudo_mask_format.iter_records``): each with
            ``height``, ``width`` and ``instances`` carrying ``id``, ``category_id`` and
            ``segmentation`` (RLE) or ``mask``.
        truth: the parsed truth JSON.
        truth_source: its file name, for errors.
    """
    if not isinstance(truth, dict) or not isinstance(truth.get("annotations"), list):
        raise DataFormatError(truth_source, "expected a COCO JSON with an 'annotations' list", field="annotations")
    sizes = {int(im["id"]): (int(im["height"]), int(im["width"])) for im in truth.get("images", [])}
    names = {int(c["id"]): c.get("name", str(c["id"])) for c in truth.get("categories", [])}
    by_id = {}
    for ann in truth["annotations"]:
        if "segmentation" in ann and ann["segmentation"]:
            by_id[int(ann["id"])] = ann
    ious: dict[int, float] = {}
    per_cat: dict[int, list[float]] = defaultdict(list)
    unmatched = 0
    for rec in records:
        h, w = int(rec["height"]), int(rec["width"])
        for inst in rec["instances"]:
            ann = by_id.get(int(inst["id"]))
            if ann is None:
                unmatched += 1
                continue
            th, tw = sizes.get(int(ann["image_id"]), (h, w))
            if (th, tw) != (h, w):
                raise DataFormatError(truth_source, f"image size {tw}x{th} differs from the pseudo mask's {w}x{h}",
                                      field="images", record=f"annotation id {ann['id']}")
            true_mask = segmentation_to_mask(ann["segmentation"], h, w)
            pred = inst["mask"] if "mask" in inst else decode_rle(inst["segmentation"])
            iou = mask_iou(pred, true_mask)
            ious[int(inst["id"])] = iou
            per_cat[int(inst["category_id"])].append(iou)
    values = list(ious.values())
    per_category = {c: {"name": names.get(c, str(c)), "mean_iou": float(np.mean(v)), "count": len(v)}
                    for c, v in per_cat.items()}
    return QualityReport(mean_iou=float(np.mean(values)) if values else float("nan"), count=len(values),
                         per_category=per_category, unmatched=unmatched, ious=ious)
