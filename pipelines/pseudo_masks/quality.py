"""Score a pseudo-mask output against true masks and draw a few overlays.

Writes ``OUT/_quality.json`` (mean IoU, per category, count) and
``OUT/_overlays/<image_id>.png`` (pseudo masks over the image, captioned with the
category and the mask IoU, drawn by ``vloss.viz.draw_instance_overlay``).
"""

from __future__ import annotations

import io

import numpy as np

from pipelines.common.pseudo_mask_format import iter_records
from pipelines.common.storage import Location, locate, read_json, write_json_atomic
from vloss.data.images import decode_image as decode_rgb
from vloss.teacher.quality import QualityReport, evaluate_masks
from vloss.viz import draw_instance_overlay

QUALITY_NAME = "_quality.json"
OVERLAY_DIR = "_overlays"


def evaluate_output(out: str, truth: str, images_root: str | None = None, num_overlays: int = 4) -> dict:
    """Mean mask IoU of a finished output against a truth COCO JSON (matched by annotation id).

    Args:
        out: the job's output directory (path or URI).
        truth: COCO JSON with true ``segmentation`` (path or URI).
        images_root: image root for overlays (none drawn when None).
        num_overlays: how many images to draw.
    Returns:
        the report dict that was written to ``_quality.json``.
    """
    out_loc, truth_loc = locate(out), locate(truth)
    truth_data = read_json(truth_loc)
    records = list(iter_records(out_loc, decode_masks=True))
    report: QualityReport = evaluate_masks(records, truth_data, truth_loc.uri)
    result = report.to_dict()
    result["truth"] = truth
    names = {int(c["id"]): c.get("name", str(c["id"])) for c in truth_data.get("categories", [])}
    overlays = []
    if images_root is not None and num_overlays > 0:
        root = locate(images_root)
        for rec in records[:num_overlays]:
            path = _draw(rec, root, out_loc, report, names)
            if path:
                overlays.append(path)
    result["overlays"] = overlays
    write_json_atomic(out_loc.child(QUALITY_NAME), result)
    return result


def _draw(rec: dict, root: Location, out: Location, report: QualityReport, names: dict) -> str | None:
    try:
        image = decode_rgb(root.child(rec["file_name"]).read_bytes())   # [H, W, 3]
    except Exception:  # the image failed in the job too; it is in _errors.jsonl already
        return None
    insts = rec["instances"]
    masks = np.stack([i["mask"] for i in insts]) if insts else np.zeros((0,) + image.shape[:2], bool)
    ious = [report.ious.get(int(i["id"]), float("nan")) for i in insts]   # shown beside each name
    pil = draw_instance_overlay(image, masks, [int(i["category_id"]) for i in insts], ious, names)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    dest = out.child(OVERLAY_DIR, f"{rec['image_id']}.png")
    dest.write_bytes_atomic(buf.getvalue())
    return dest.uri


def format_quality(result: dict, top: int = 10) -> str:
    """Human-readable IoU report."""
    lines = [f"mean mask IoU = {result['mean_iou']:.4f} over {result['count']} masks"
             f" (unmatched: {result['unmatched']})"]
    cats = sorted(result["per_category"].items(), key=lambda kv: -kv[1]["count"])[:top]
    lines += [f"  {v['name']:<24s} IoU {v['mean_iou']:.4f}  n={v['count']}" for _, v in cats]
    return "\n".join(lines)
