"""What every teacher backend returns, and the pixel extent of a box.

A box ``[x0, y0, x1, y1]`` in continuous pixel coordinates covers the pixels
``floor(x0) <= col < ceil(x1)`` and ``floor(y0) <= row < ceil(y1)``; a pseudo mask
is always restricted to that extent, so every mask lies inside its (clipped) box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class TeacherOutput:
    """Masks for the given boxes of one image, in the order the boxes were given.

    Args:
        masks: ``[N, H, W]`` bool, at the image's original resolution.
        scores: ``[N]`` float32 mask score (backend-specific, see the backend).
        labels: ``[N]`` int64 teacher class channel used for each mask (0 where none).
    """

    masks: np.ndarray   # [N, H, W] bool
    scores: np.ndarray  # [N] float32
    labels: np.ndarray  # [N] int64


def box_pixel_bounds(xyxy, height: int, width: int) -> tuple[int, int, int, int]:
    """Integer pixel extent ``(r0, r1, c0, c1)`` (half-open) of a box, clamped to the image.

    Args:
        xyxy: ``[x0, y0, x1, y1]`` in pixels.
        height: image height.
        width: image width.
    """
    x0, y0, x1, y1 = (float(v) for v in xyxy)
    c0 = min(max(int(math.floor(x0)), 0), width)
    r0 = min(max(int(math.floor(y0)), 0), height)
    c1 = min(max(int(math.ceil(x1)), c0), width)
    r1 = min(max(int(math.ceil(y1)), r0), height)
    return r0, r1, c0, c1


def box_extent_mask(xyxy, height: int, width: int) -> np.ndarray:
    """``[H, W]`` bool mask that is True exactly on the box's pixel extent."""
    r0, r1, c0, c1 = box_pixel_bounds(xyxy, height, width)
    out = np.zeros((height, width), dtype=bool)
    out[r0:r1, c0:c1] = True
    return out


def crop_to_boxes(masks: np.ndarray, boxes_xyxy: np.ndarray) -> np.ndarray:
    """Zero every mask outside its box's pixel extent (in place) and return it.

    Args:
        masks: ``[N, H, W]`` bool.
        boxes_xyxy: ``[N, 4]`` boxes in pixels.
    """
    n, h, w = masks.shape
    for i in range(n):
        r0, r1, c0, c1 = box_pixel_bounds(boxes_xyxy[i], h, w)
        inside = masks[i, r0:r1, c0:c1].copy()
        masks[i] = False
        masks[i, r0:r1, c0:c1] = inside
    return masks


class BoxFillPredictor:
    """The weakly-supervised baseline: each mask is its clipped box, filled.

    Scores are 1.0 and labels 0 (no classifier is involved).
    """

    def predict(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> list[TeacherOutput]:
        """Fill each box.

        Args:
            images: ``[H, W, 3]`` uint8 arrays (only their sizes are used).
            boxes: per image ``[N, 4]`` float ``xyxy`` boxes.
        """
        outs = []
        for image, bxs in zip(images, boxes):
            h, w = image.shape[:2]
            bxs = np.asarray(bxs, dtype=np.float64).reshape(-1, 4)
            masks = np.zeros((len(bxs), h, w), dtype=bool)
            for i, b in enumerate(bxs):
                r0, r1, c0, c1 = box_pixel_bounds(b, h, w)
                masks[i, r0:r1, c0:c1] = True
            outs.append(TeacherOutput(masks, np.ones(len(bxs), np.float32), np.zeros(len(bxs), np.int64)))
        return outs
