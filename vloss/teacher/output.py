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

    Each mask is held as the crop of its pixel extent (``bounds``), not at full resolution: the
    memory of an image's output grows with the boxes' areas, not with boxes x height x width (one
    8000 x 6000 image with 60 boxes would otherwise hold 2.9 GB of bool masks). :meth:`mask`
    materialises one full-size mask at a time.

    Args:
        crops: per box ``[r1 - r0, c1 - c0]`` bool, the mask inside its bounds.
        bounds: ``[N, 4]`` int64 ``(r0, r1, c0, c1)`` half-open pixel extents, inside the image.
        scores: ``[N]`` float32 mask score (backend-specific, see the backend).
        labels: ``[N]`` int64 teacher class channel used for each mask (0 where none).
        height, width: the image's size.
    """

    crops: list[np.ndarray]
    bounds: np.ndarray  # [N, 4] int64
    scores: np.ndarray  # [N] float32
    labels: np.ndarray  # [N] int64
    height: int
    width: int

    def __len__(self) -> int:
        return len(self.crops)

    def mask(self, k: int) -> np.ndarray:
        """Box ``k``'s mask at full resolution, ``[H, W]`` bool."""
        r0, r1, c0, c1 = (int(v) for v in self.bounds[k])
        out = np.zeros((self.height, self.width), dtype=bool)
        out[r0:r1, c0:c1] = self.crops[k]
        return out

    def area(self, k: int) -> int:
        """Pixels in box ``k``'s mask."""
        return int(self.crops[k].sum())

    @property
    def masks(self) -> np.ndarray:
        """All masks at full resolution, ``[N, H, W]`` bool (small images and tests; use :meth:`mask`)."""
        out = np.zeros((len(self.crops), self.height, self.width), dtype=bool)
        for k in range(len(self.crops)):
            r0, r1, c0, c1 = (int(v) for v in self.bounds[k])
            out[k, r0:r1, c0:c1] = self.crops[k]
        return out

    @classmethod
    def empty(cls, height: int, width: int) -> "TeacherOutput":
        """No boxes."""
        return cls([], np.zeros((0, 4), np.int64), np.zeros(0, np.float32), np.zeros(0, np.int64), height, width)


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
            bounds = np.array([box_pixel_bounds(b, h, w) for b in bxs], dtype=np.int64).reshape(-1, 4)
            crops = [np.ones((r1 - r0, c1 - c0), dtype=bool) for r0, r1, c0, c1 in bounds]
            outs.append(TeacherOutput(crops, bounds, np.ones(len(bxs), np.float32), np.zeros(len(bxs), np.int64),
                                      h, w))
        return outs
