"""Loading and checking COCO/LVIS-style instance-mask result lists.

A result is ``{"image_id", "category_id", "segmentation": RLE, "score"}`` as the COCO and
LVIS APIs read them. Both APIs trust their input (bad ids surface as ``KeyError`` or a bare
``assert`` deep inside), so every record is checked here first and a bad one raises a
:class:`DataFormatError` naming the file, the record index / image id and the field.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from vloss.data.errors import DataFormatError


@dataclass
class ResultCheck:
    """Counts reported beside the metrics, so nothing is dropped silently.

    Attributes:
        num_results: results read.
        num_kept: results passed to the scorer.
        dropped_over_max_dets: lowest-scoring results dropped from images that had more
            than ``max_dets`` results.
        images_truncated: images that had more than ``max_dets`` results.
    """

    num_results: int = 0
    num_kept: int = 0
    dropped_over_max_dets: int = 0
    images_truncated: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(num_results=self.num_results, num_kept=self.num_kept,
                    dropped_over_max_dets=self.dropped_over_max_dets,
                    images_truncated=self.images_truncated)


def load_results(results: str | Path | list, source: str | None = None) -> tuple[list[dict], str]:
    """Results from a JSON file or an in-memory list.

    Args:
        results: path to a JSON list, or the list itself.
        source: name used in errors for an in-memory list.

    Returns:
        (list of result dicts, source name for errors).
    """
    if isinstance(results, (str, Path)):
        path = Path(results)
        try:
            with open(path) as f:
                data = json.load(f)
        except FileNotFoundError:
            raise DataFormatError(path, "results file not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:  # a binary file: name it too
            raise DataFormatError(path, f"not valid JSON ({e})") from None
        source = str(path)
    else:
        data = results
        source = source or "<results list>"
    if not isinstance(data, list):
        raise DataFormatError(source, "results must be a JSON list of detections")
    if not data:
        raise DataFormatError(source, "results list is empty; nothing to score")
    return data, source


def check_mask_results(results: list, source: str, images: Mapping[Any, Mapping],
                       cat_ids: set, max_dets: int | None) -> tuple[list[dict], ResultCheck]:
    """Validate results and keep at most ``max_dets`` per image (highest scores first).

    The truncation matches the LVIS API's own rule (stable sort by descending score,
    keep the first ``max_dets``) but is counted in the returned :class:`ResultCheck`.
    ``bbox`` fields are removed: both APIs would otherwise take a result's area from its
    box rather than its mask when assigning small/medium/large.

    Args:
        results: result dicts.
        source: file name for errors.
        images: ``{image_id: image record}`` of the ground truth (``height``, ``width``).
        cat_ids: valid category ids.
        max_dets: per-image cap; ``None`` keeps all.

    Returns:
        (cleaned results in input order per image, counts).
    """
    check = ResultCheck(num_results=len(results))
    per_image: dict[Any, list[dict]] = defaultdict(list)
    for k, r in enumerate(results):
        if not isinstance(r, Mapping):
            raise DataFormatError(source, "a result must be an object", record=f"results[{k}]")
        for key in ("image_id", "category_id", "segmentation", "score"):
            if key not in r:
                raise DataFormatError(source, f"result has no '{key}'", field=key, record=f"results[{k}]")
        iid = r["image_id"]
        rec = f"results[{k}], image_id={iid}"
        if iid not in images:
            raise DataFormatError(source, f"unknown image id {iid!r}", field="image_id", record=rec)
        if r["category_id"] not in cat_ids:
            raise DataFormatError(source, f"unknown category id {r['category_id']!r}", field="category_id",
                                  record=rec)
        score = r["score"]
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            raise DataFormatError(source, f"score must be a finite number, got {score!r}", field="score",
                                  record=rec)
        seg = r["segmentation"]
        if not isinstance(seg, Mapping) or "size" not in seg or "counts" not in seg \
                or not isinstance(seg["counts"], (str, bytes)):
            raise DataFormatError(source, "segmentation must be a compressed RLE {'size', 'counts'}",
                                  field="segmentation", record=rec)
        img = images[iid]
        if "height" in img and "width" in img and list(seg["size"]) != [img["height"], img["width"]]:
            raise DataFormatError(source, f"RLE size {list(seg['size'])} differs from the image's "
                                  f"[height, width] {[img['height'], img['width']]}", field="segmentation",
                                  record=rec)
        clean = {key: v for key, v in r.items() if key != "bbox"}
        per_image[iid].append(clean)
    kept: list[dict] = []
    for iid, rs in per_image.items():
        if max_dets is not None and max_dets >= 0 and len(rs) > max_dets:
            check.images_truncated += 1
            check.dropped_over_max_dets += len(rs) - max_dets
            rs = sorted(rs, key=lambda d: d["score"], reverse=True)[:max_dets]
        kept.extend(rs)
    check.num_kept = len(kept)
    return kept, check


def renumber_annotation_ids(dataset: dict) -> bool:
    """Give ground-truth annotations ids 1..N when any id is 0 or negative.

    Both ``COCOeval`` and ``LVISEval`` record a match by storing the matched ground
    truth's id and later test it for truth, so a ground truth with id 0 can never count as
    matched (real example: ``panoptic_coco_detection_format.json`` starts at id 0).
    Renumbering changes nothing else in the evaluation. Done in place.

    Args:
        dataset: the loaded annotation JSON (``annotations`` list).

    Returns:
        True when ids were renumbered.
    """
    anns = dataset.get("annotations", [])
    if all(isinstance(a.get("id"), int) and a["id"] > 0 for a in anns):
        return False
    for k, a in enumerate(anns):
        a["id"] = k + 1
    return True


def none_if_undefined(value: float) -> float | None:
    """COCO/LVIS report -1 for an undefined average; JSON gets ``null`` instead."""
    value = float(value)
    return None if value < 0 else value
