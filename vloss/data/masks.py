"""Mask encodings shared by every part of the system.

* COCO panoptic PNGs store a segment id per pixel as RGB: ``id = R + 256*G + 256**2*B``.
* Instance masks travel as COCO compressed RLE (``{"size": [h, w], "counts": str}``),
  encoded and decoded by pycocotools so that files interoperate with COCO/LVIS tools.
* Boxes are COCO ``[x, y, w, h]`` in pixels, as pycocotools' ``toBbox`` computes them.
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

OFFSET = 256 * 256 * 256  # PQ evaluation pair-key offset, as the COCO panoptic API


def rgb2id(color: np.ndarray) -> np.ndarray:
    """[H, W, 3] uint8 -> [H, W] int64 segment ids."""
    color = np.asarray(color)
    if color.ndim != 3 or color.shape[2] < 3:
        raise ValueError(f"rgb2id expects an [H, W, 3] image, got shape {color.shape}")
    c = color[..., :3].astype(np.int64)
    return c[..., 0] + 256 * c[..., 1] + 256 * 256 * c[..., 2]


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """[H, W] integer segment ids -> [H, W, 3] uint8 RGB."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.min(initial=0) < 0 or ids.max(initial=0) >= 256 ** 3:
        raise ValueError("segment ids must lie in [0, 256**3)")
    out = np.empty(ids.shape + (3,), dtype=np.uint8)
    out[..., 0] = ids % 256
    out[..., 1] = (ids // 256) % 256
    out[..., 2] = ids // (256 * 256)
    return out


def encode_rle(mask: np.ndarray) -> dict:
    """[H, W] bool mask -> COCO compressed RLE with ``counts`` as str (JSON-safe)."""
    m = np.asfortranarray(np.asarray(mask, dtype=np.uint8))
    if m.ndim != 2:
        raise ValueError(f"encode_rle expects an [H, W] mask, got shape {m.shape}")
    rle = mask_utils.encode(m)
    rle["counts"] = rle["counts"].decode("ascii")
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"]}


def decode_rle(rle: dict) -> np.ndarray:
    """COCO RLE (compressed str/bytes counts or uncompressed list counts) -> [H, W] bool."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError("an RLE must be a dict with 'size' and 'counts'")
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):
        rle = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    elif isinstance(counts, str):
        rle = {"size": [h, w], "counts": counts.encode("ascii")}
    return mask_utils.decode(rle).astype(bool)


def polygons_to_mask(polygons: list, height: int, width: int) -> np.ndarray:
    """COCO polygon list ``[[x0, y0, x1, y1, ...], ...]`` -> [H, W] bool mask."""
    rles = mask_utils.frPyObjects(polygons, height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def segmentation_to_mask(segm, height: int, width: int) -> np.ndarray:
    """Any COCO ``segmentation`` field (polygons, RLE, uncompressed RLE) -> [H, W] bool."""
    if isinstance(segm, list):
        return polygons_to_mask(segm, height, width)
    return decode_rle(segm)


def mask_to_bbox(mask: np.ndarray) -> list[float]:
    """[H, W] bool -> COCO ``[x, y, w, h]`` (tight pixel box; zeros for an empty mask)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    x0, x1 = int(xs.min()), int(xs.max())
    y0, y1 = int(ys.min()), int(ys.max())
    return [float(x0), float(y0), float(x1 - x0 + 1), float(y1 - y0 + 1)]
