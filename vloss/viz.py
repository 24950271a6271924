"""Overlays of panoptic and instance predictions on images (used by eval, pseudo masks, demo).

Colours are a pure function of the segment id (panoptic) or instance index (instances),
so two runs of the same prediction draw the same picture. Segments are alpha-blended over
the image, their boundaries drawn in white, and class names written with PIL's default
font at a point inside each segment (the segment pixel nearest to its centroid).
"""

from __future__ import annotations

import colorsys
from typing import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

GOLDEN = 0.618033988749895


def color_for_id(idx: int) -> tuple[int, int, int]:
    """Deterministic, well-spread RGB colour for an integer id.

    Args:
        idx: segment id / instance index.
    """
    idx = int(idx)
    hue = (idx * GOLDEN) % 1.0
    sat = 0.55 + 0.35 * ((idx * 7) % 3) / 2.0
    val = 0.75 + 0.25 * ((idx * 11) % 2)
    r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
    return int(r * 255), int(g * 255), int(b * 255)


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be [H, W, 3] uint8, got {image.shape} {image.dtype}")
    return image


def _name(names: Mapping[int, str] | Sequence[str] | None, cat: int) -> str:
    if names is None:
        return str(cat)
    if isinstance(names, Mapping):
        return str(names.get(cat, cat))
    return str(names[cat]) if 0 <= cat < len(names) else str(cat)


def _boundary(ids: np.ndarray) -> np.ndarray:
    """[H, W] ids -> [H, W] bool, True where a 4-neighbour has another id."""
    edge = np.zeros(ids.shape, dtype=bool)
    diff_x = ids[:, 1:] != ids[:, :-1]  # [H, W-1]
    diff_y = ids[1:, :] != ids[:-1, :]  # [H-1, W]
    edge[:, 1:] |= diff_x
    edge[:, :-1] |= diff_x
    edge[1:, :] |= diff_y
    edge[:-1, :] |= diff_y
    return edge


def _anchor(mask: np.ndarray) -> tuple[int, int] | None:
    """(x, y) of the mask pixel nearest to the mask's centroid; ``None`` if empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    cy, cx = ys.mean(), xs.mean()
    k = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
    return int(xs[k]), int(ys[k])


def _label(draw: ImageDraw.ImageDraw, font, xy: tuple[int, int], text: str, size: tuple[int, int]) -> None:
    """Text centred on ``xy`` on a dark box, kept inside the image."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    w, h = right - left, bottom - top
    x = min(max(xy[0] - w // 2, 0), max(size[0] - w - 2, 0))
    y = min(max(xy[1] - h // 2, 0), max(size[1] - h - 2, 0))
    draw.rectangle((x - 1, y - 1, x + w + 1, y + h + 1), fill=(0, 0, 0))
    draw.text((x - left, y - top), text, fill=(255, 255, 255), font=font)


def draw_panoptic_overlay(image: np.ndarray, seg_ids: np.ndarray, segments_info: Sequence[Mapping],
                          names: Mapping[int, str] | Sequence[str] | None = None, *,
                          alpha: float = 0.5, draw_names: bool = True) -> Image.Image:
    """Panoptic segments over an image.

    Args:
        image: [H, W, 3] uint8 RGB.
        seg_ids: [H, W] integer segment ids (0 = VOID, left undrawn).
        segments_info: ``{"id", "category_id"[, "score"]}`` per segment (COCO panoptic); a score is
            written beside the name.
        names: category id -> name (mapping, or sequence indexed by id).
        alpha: opacity of the segment colours.
        draw_names: write class names at segment centres.

    Returns:
        An RGB PIL image of size (W, H).
    """
    image = _check_image(image)
    seg_ids = np.asarray(seg_ids).astype(np.int64)  # [H, W]
    if seg_ids.shape != image.shape[:2]:
        raise ValueError(f"seg_ids {seg_ids.shape} and image {image.shape[:2]} differ in size")
    ids, inverse = np.unique(seg_ids, return_inverse=True)  # [S], [H*W]
    palette = np.array([color_for_id(i) for i in ids], dtype=np.float32)  # [S, 3]
    colors = palette[inverse.reshape(seg_ids.shape)]  # [H, W, 3]
    labelled = (seg_ids != 0)[..., None]  # [H, W, 1]
    out = image.astype(np.float32)
    out = np.where(labelled, (1 - alpha) * out + alpha * colors, out)
    out[_boundary(seg_ids)] = 255.0
    pil = Image.fromarray(out.round().clip(0, 255).astype(np.uint8), "RGB")
    if draw_names:
        draw = ImageDraw.Draw(pil)
        font = ImageFont.load_default()
        for seg in segments_info:
            xy = _anchor(seg_ids == int(seg["id"]))
            if xy is not None:
                text = _name(names, int(seg["category_id"]))
                if seg.get("score") is not None:
                    text += f" {float(seg['score']):.2f}"
                _label(draw, font, xy, text, pil.size)
    return pil


def draw_instance_overlay(image: np.ndarray, masks: np.ndarray, labels: Sequence[int],
                          scores: Sequence[float] | None = None,
                          names: Mapping[int, str] | Sequence[str] | None = None, *,
                          alpha: float = 0.5, draw_names: bool = True) -> Image.Image:
    """Instance masks over an image; later masks are drawn over earlier ones.

    Args:
        image: [H, W, 3] uint8 RGB.
        masks: [N, H, W] bool.
        labels: [N] category ids.
        scores: [N] confidences, shown beside the names (optional).
        names: category id -> name (mapping, or sequence indexed by id).
        alpha: opacity of the mask colours.
        draw_names: write "name score" at each mask's centre.

    Returns:
        An RGB PIL image of size (W, H).
    """
    image = _check_image(image)
    masks = np.asarray(masks, dtype=bool)  # [N, H, W]
    if masks.ndim != 3 or masks.shape[1:] != image.shape[:2]:
        raise ValueError(f"masks must be [N, H, W] matching image {image.shape[:2]}, got {masks.shape}")
    labels = [int(v) for v in labels]
    if len(labels) != len(masks) or (scores is not None and len(scores) != len(masks)):
        raise ValueError("masks, labels and scores must have the same length")
    out = image.astype(np.float32)  # [H, W, 3]
    edges = np.zeros(image.shape[:2], dtype=bool)  # [H, W]
    for i, m in enumerate(masks):
        color = np.array(color_for_id(i + 1), dtype=np.float32)
        out[m] = (1 - alpha) * out[m] + alpha * color
        edges |= _boundary(m.astype(np.int8)) & m
    out[edges] = 255.0
    pil = Image.fromarray(out.round().clip(0, 255).astype(np.uint8), "RGB")
    if draw_names:
        draw = ImageDraw.Draw(pil)
        font = ImageFont.load_default()
        for i, m in enumerate(masks):
            xy = _anchor(m)
            if xy is None:
                continue
            text = _name(names, labels[i])
            if scores is not None:
                text += f" {float(scores[i]):.2f}"
            _label(draw, font, xy, text, pil.size)
    return pil
