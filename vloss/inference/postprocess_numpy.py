"""NumPy-only input preparation and post-processing for exported VLOSS models (no torch).

The counterpart of :mod:`vloss.inference.export` on the consumer side: it mirrors, in NumPy,

* the input preparation of evaluation (:func:`vloss.data.transforms.resize_for_inference`,
  the zero padding of :func:`vloss.inference.forward_padded`, and
  :func:`vloss.data.transforms.normalize_images`);
* :func:`vloss.inference.resize_mask_logits` (bilinear, ``align_corners=False``, with the
  padded / valid crop);
* the Mask2Former rules of :func:`vloss.inference.panoptic_inference`,
  :func:`~vloss.inference.instance_inference` and :func:`~vloss.inference.semantic_inference`.

Only NumPy is imported at module level; :func:`resize_image` imports Pillow (the resize the
evaluation uses). A typical consumer of an ONNX export::

    import onnxruntime as ort
    from vloss.inference import postprocess_numpy as pp

    meta = pp.load_metadata("vloss.onnx")
    small = pp.resize_image(image, size=512, max_size=672)                  # [h, w, 3] uint8
    x, padded = pp.prepare_inputs([small], pad_to=(meta["height"], meta["width"]))
    logits, masks = ort.InferenceSession("vloss.onnx").run(None, {"images": x})
    mask_logits = pp.resize_mask_logits(masks[0], image.shape[:2], padded_size=padded,
                                        valid_size=small.shape[:2])        # [Q, H, W]
    seg_ids, segments = pp.panoptic_inference(logits[0], mask_logits, meta["is_thing"])
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_metadata(path: str | Path) -> dict[str, Any]:
    """Read an export's metadata.

    Args:
        path: the exported file (``model.onnx``: reads ``model.onnx.json`` beside it) or the JSON itself.

    Returns:
        the metadata dict written by :mod:`vloss.inference.export`.
    """
    path = Path(path)
    if path.suffix != ".json":
        path = path.with_name(path.name + ".json")
    return json.loads(path.read_text())


# --------------------------------------------------------------------------- inputs


def resized_shape(height: int, width: int, size: int, max_size: int) -> tuple[int, int]:
    """``(h, w)`` with the shorter side ``size`` and the longer side at most ``max_size``.

    Args:
        height: original height.
        width: original width.
        size: target shorter side.
        max_size: cap on the longer side.

    Returns:
        the resized ``(h, w)``, each at least 1.
    """
    scale = size / min(height, width)
    if max(height, width) * scale > max_size:
        scale = max_size / max(height, width)
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def resize_image(image: np.ndarray, size: int, max_size: int) -> np.ndarray:
    """Resize an image for inference (Pillow bilinear, as evaluation does).

    Args:
        image: ``[H, W, 3]`` uint8 RGB.
        size: target shorter side.
        max_size: cap on the longer side.

    Returns:
        ``[h, w, 3]`` uint8 with ``(h, w) = resized_shape(H, W, size, max_size)``.
    """
    from PIL import Image

    rh, rw = resized_shape(image.shape[0], image.shape[1], size, max_size)
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((rw, rh), resample=Image.BILINEAR))


def pad_images(images: Sequence[np.ndarray], size_divisor: int = 32,
               pad_to: tuple[int, int] | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Zero-pad images at the bottom/right into one batch.

    Args:
        images: B ``[h_b, w_b, 3]`` uint8 images.
        size_divisor: without ``pad_to``, pad to the largest sides rounded up to a multiple of this.
        pad_to: a fixed ``(Hp, Wp)`` (an export's ``height``/``width``) every image must fit in.

    Returns:
        (``[B, Hp, Wp, 3]`` uint8, ``(Hp, Wp)``).

    Raises:
        ValueError: no images, or an image larger than ``pad_to``.
    """
    if not len(images):
        raise ValueError("pad_images needs at least one image")
    if pad_to is None:
        hp = int(math.ceil(max(im.shape[0] for im in images) / size_divisor) * size_divisor)
        wp = int(math.ceil(max(im.shape[1] for im in images) / size_divisor) * size_divisor)
    else:
        hp, wp = int(pad_to[0]), int(pad_to[1])
        for im in images:
            if im.shape[0] > hp or im.shape[1] > wp:
                raise ValueError(f"image of {im.shape[0]}x{im.shape[1]} does not fit the input size {hp}x{wp}; "
                                 f"resize it first")
    padded = np.zeros((len(images), hp, wp, 3), dtype=np.uint8)  # [B, Hp, Wp, 3]
    for k, im in enumerate(images):
        padded[k, : im.shape[0], : im.shape[1]] = im
    return padded, (hp, wp)


def normalize_images(images: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN,
                     std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """``[B, H, W, 3]`` uint8 -> ``[B, 3, H, W]`` float32 ``(x / 255 - mean) / std`` (ImageNet statistics).

    Args:
        images: ``[B, H, W, 3]`` uint8 RGB.
        mean: per-channel mean on the 0..1 scale.
        std: per-channel standard deviation on the 0..1 scale.

    Returns:
        ``[B, 3, H, W]`` float32, contiguous.
    """
    x = np.asarray(images, dtype=np.uint8).transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)
    m = np.asarray(mean, dtype=np.float32).reshape(1, 3, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(1, 3, 1, 1)
    return np.ascontiguousarray((x - m) / s)


def prepare_inputs(images: Sequence[np.ndarray], size_divisor: int = 32,
                   pad_to: tuple[int, int] | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad and normalise resized images into a network input (NumPy twin of ``forward_padded``'s preparation).

    Args:
        images: B resized ``[h_b, w_b, 3]`` uint8 RGB images.
        size_divisor: padding multiple when ``pad_to`` is not given.
        pad_to: fixed ``(Hp, Wp)``, e.g. ``(meta["height"], meta["width"])`` of an export.

    Returns:
        (``images [B, 3, Hp, Wp]`` float32, ``(Hp, Wp)``).
    """
    padded, size = pad_images(images, size_divisor, pad_to)
    return normalize_images(padded), size


# --------------------------------------------------------------------------- mask resizing


def _linear_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of a 1-D linear resize, ``align_corners=False`` (PyTorch's rule)."""
    scale = np.float32(in_size) / np.float32(out_size)  # float32, as PyTorch's CPU kernel
    # (dst + 0.5) * scale - 0.5 rounded once to float32 (PyTorch's kernel contracts it to a fused multiply-add)
    src = ((np.arange(out_size, dtype=np.float64) + 0.5) * np.float64(scale) - 0.5).astype(np.float32)
    src = np.maximum(src, np.float32(0.0))
    i0 = np.floor(src).astype(np.int64)
    i0 = np.minimum(i0, in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    w1 = np.clip(src - i0.astype(np.float32), 0.0, 1.0).astype(np.float32)
    return i0, i1, (np.float32(1.0) - w1).astype(np.float32), w1


def resize_bilinear(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of the last two axes, ``align_corners=False``, no antialiasing
    (``torch.nn.functional.interpolate(mode="bilinear")``).

    Args:
        x: ``[..., h, w]`` array (computed in float32).
        size: output ``(H, W)``.

    Returns:
        ``[..., H, W]`` float32.
    """
    x = np.asarray(x, dtype=np.float32)
    out_h, out_w = int(size[0]), int(size[1])
    if x.shape[-1] != out_w:
        i0, i1, w0, w1 = _linear_weights(x.shape[-1], out_w)
        x = x[..., i0] * w0 + x[..., i1] * w1  # [..., h, W]
    if x.shape[-2] != out_h:
        i0, i1, w0, w1 = _linear_weights(x.shape[-2], out_h)
        x = x[..., i0, :] * w0[:, None] + x[..., i1, :] * w1[:, None]  # [..., H, W]
    return np.ascontiguousarray(x, dtype=np.float32)


def resize_mask_logits(mask_logits: np.ndarray, size: tuple[int, int], *,
                       padded_size: tuple[int, int] | None = None,
                       valid_size: tuple[int, int] | None = None) -> np.ndarray:
    """Upsample mask logits to an image size (NumPy twin of :func:`vloss.inference.resize_mask_logits`).

    With ``padded_size`` and ``valid_size``: upsample to the padded input size, crop the valid
    top-left region, then resize that to ``size``.

    Args:
        mask_logits: ``[Q, h, w]`` or ``[B, Q, h, w]``.
        size: output ``(H, W)`` (the original image size).
        padded_size: ``(Hp, Wp)`` of the padded network input the logits cover.
        valid_size: ``(Hv, Wv)`` of the resized image inside that padded input.

    Returns:
        ``[Q, H, W]`` or ``[B, Q, H, W]`` float32 logits.
    """
    if (padded_size is None) != (valid_size is None):
        raise ValueError("padded_size and valid_size must be given together")
    x = np.asarray(mask_logits)
    if x.ndim not in (3, 4):
        raise ValueError(f"mask_logits must be [Q, h, w] or [B, Q, h, w], got {tuple(x.shape)}")
    if padded_size is not None:
        if valid_size[0] > padded_size[0] or valid_size[1] > padded_size[1]:
            raise ValueError(f"valid_size {valid_size} exceeds padded_size {padded_size}")
        x = resize_bilinear(x, padded_size)[..., : valid_size[0], : valid_size[1]]  # [..., Hv, Wv]
    return resize_bilinear(x, size)


# --------------------------------------------------------------------------- results


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable float32 softmax."""
    x = np.asarray(x, dtype=np.float32)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """float32 logistic ``1 / (1 + exp(-x))`` (0 for very negative x, without overflow warnings)."""
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(over="ignore"):
        return np.float32(1.0) / (np.float32(1.0) + np.exp(-x))


def _check(cls_logits: np.ndarray, mask_logits: np.ndarray, is_thing: Sequence[bool] | None) -> int:
    """Validate shapes; return ``C``, the vocabulary size."""
    if cls_logits.ndim != 2 or cls_logits.shape[1] < 2:
        raise ValueError(f"cls_logits must be [Q, C+1] with C >= 1, got {tuple(cls_logits.shape)}")
    if mask_logits.ndim != 3 or mask_logits.shape[0] != cls_logits.shape[0]:
        raise ValueError(f"mask_logits must be [Q={cls_logits.shape[0]}, H, W], got {tuple(mask_logits.shape)}")
    num_classes = cls_logits.shape[1] - 1
    if is_thing is not None and len(is_thing) != num_classes:
        raise ValueError(f"is_thing has {len(is_thing)} entries for a vocabulary of {num_classes} classes")
    return num_classes


def panoptic_inference(cls_logits: np.ndarray, mask_logits: np.ndarray, is_thing: Sequence[bool],
                       object_mask_threshold: float = 0.8,
                       overlap_threshold: float = 0.8) -> tuple[np.ndarray, list[dict]]:
    """Panoptic segmentation of one image (the rule of :func:`vloss.inference.panoptic_inference`).

    Queries whose best class is not no-object and whose probability exceeds
    ``object_mask_threshold`` are kept; each pixel goes to the kept query with the largest
    ``score * sigmoid(mask)``; a segment is the pixels a query won where its own mask
    probability is >= 0.5; it is dropped when it keeps less than ``overlap_threshold`` of its
    binarised mask; segments of one stuff class share one id.

    Args:
        cls_logits: ``[Q, C+1]`` class logits (last = no-object).
        mask_logits: ``[Q, H, W]`` mask logits at the output resolution.
        is_thing: ``C`` flags, True for thing classes.
        object_mask_threshold: minimum class probability of a kept query.
        overlap_threshold: minimum share of a query's binarised mask it must keep.

    Returns:
        ``(seg_ids, segments_info)``: ``seg_ids`` int32 ``[H, W]`` (0 = void, segments numbered
        1, 2, ... in query order) and one dict per segment ``{"id", "category", "isthing",
        "score", "area"}`` as the PyTorch version returns them.
    """
    cls_logits, mask_logits = np.asarray(cls_logits), np.asarray(mask_logits)
    num_classes = _check(cls_logits, mask_logits, is_thing)
    probs = softmax(cls_logits)  # [Q, C+1]
    labels = probs.argmax(-1)  # [Q]
    scores = np.take_along_axis(probs, labels[:, None], -1)[:, 0]  # [Q]
    keep = (labels != num_classes) & (scores > object_mask_threshold)  # [Q]
    height, width = mask_logits.shape[-2:]
    seg_ids = np.zeros((height, width), dtype=np.int32)
    if not keep.any():
        return seg_ids, []
    cur_scores, cur_classes = scores[keep], labels[keep]
    cur_masks = sigmoid(mask_logits[keep])  # [K, H, W]
    winner = (cur_scores[:, None, None] * cur_masks).argmax(0)  # [H, W]
    segments: list[dict] = []
    stuff_segment: dict[int, dict] = {}
    for k in range(cur_classes.shape[0]):
        cls = int(cur_classes[k])
        thing = bool(is_thing[cls])
        won = winner == k  # [H, W]
        binary = cur_masks[k] >= 0.5  # [H, W]
        mask_area = int(won.sum())
        original_area = int(binary.sum())
        mask = won & binary
        if mask_area == 0 or original_area == 0 or not mask.any():
            continue
        if mask_area / original_area < overlap_threshold:
            continue
        score = float(cur_scores[k])
        if not thing and cls in stuff_segment:
            info = stuff_segment[cls]
            seg_ids[mask] = info["id"]
            info["score"] = max(info["score"], score)
            continue
        info = {"id": len(segments) + 1, "category": cls, "isthing": thing, "score": score, "area": 0}
        seg_ids[mask] = info["id"]
        segments.append(info)
        if not thing:
            stuff_segment[cls] = info
    areas = np.bincount(seg_ids.ravel(), minlength=len(segments) + 1)
    for info in segments:
        info["area"] = int(areas[info["id"]])
    return seg_ids, segments


def instance_inference(cls_logits: np.ndarray, mask_logits: np.ndarray, topk: int = 100,
                       is_thing: Sequence[bool] | None = None) -> dict[str, np.ndarray]:
    """Instance segmentation of one image (the rule of :func:`vloss.inference.instance_inference`).

    Top-k over all (query, class) probabilities of the softmax without no-object (stuff classes
    excluded first when ``is_thing`` is given); masks are ``logit > 0``; the score is the class
    probability times the mean mask probability inside the binary mask. Equal probabilities are
    ordered query-major (first candidate first).

    Args:
        cls_logits: ``[Q, C+1]`` class logits (last = no-object).
        mask_logits: ``[Q, H, W]`` mask logits at the output resolution.
        topk: predictions to keep (clamped to the number of candidates).
        is_thing: optional ``C`` flags; when given, only thing classes are predicted.

    Returns:
        ``{"scores": [K] float32, "labels": [K] int64, "masks": [K, H, W] bool, "query": [K] int64}``,
        ordered by class probability.
    """
    cls_logits, mask_logits = np.asarray(cls_logits), np.asarray(mask_logits)
    num_classes = _check(cls_logits, mask_logits, is_thing)
    probs = softmax(cls_logits)[:, :-1]  # [Q, C]
    if is_thing is not None:
        class_ids = np.flatnonzero(np.asarray(list(is_thing), dtype=bool)).astype(np.int64)  # [Ct]
    else:
        class_ids = np.arange(num_classes, dtype=np.int64)  # [C]
    cand = probs[:, class_ids].ravel()  # [Q * Ct], query-major
    k = min(int(topk), cand.size)
    flat = np.argsort(-cand, kind="stable")[:k]  # [K]
    cls_scores = cand[flat]
    n = max(class_ids.size, 1)
    query = (flat // n).astype(np.int64)  # [K]
    labels = class_ids[flat % n] if class_ids.size else np.zeros(0, np.int64)  # [K]
    logits = mask_logits[query].astype(np.float32)  # [K, H, W]
    masks = logits > 0  # [K, H, W]
    pixels = mask_logits.shape[-2] * mask_logits.shape[-1]
    binary = masks.reshape(k, pixels).astype(np.float32)  # [K, HW]
    mask_scores = (sigmoid(logits).reshape(k, pixels) * binary).sum(1) / (binary.sum(1) + np.float32(1e-6))  # [K]
    return {"scores": (cls_scores * mask_scores).astype(np.float32), "labels": labels.astype(np.int64),
            "masks": masks, "query": query}


def semantic_inference(cls_logits: np.ndarray, mask_logits: np.ndarray) -> np.ndarray:
    """Per-class semantic scores ``sum_q softmax(cls)[q, c] * sigmoid(mask)[q]``.

    Args:
        cls_logits: ``[Q, C+1]`` class logits (the no-object column is dropped after softmax).
        mask_logits: ``[Q, H, W]`` mask logits.

    Returns:
        ``[C, H, W]`` float32 scores; ``argmax(0)`` gives the semantic label map.
    """
    cls_logits, mask_logits = np.asarray(cls_logits), np.asarray(mask_logits)
    _check(cls_logits, mask_logits, None)
    probs = softmax(cls_logits)[:, :-1]  # [Q, C]
    return np.einsum("qc,qhw->chw", probs, sigmoid(mask_logits)).astype(np.float32)


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "instance_inference",
    "load_metadata",
    "normalize_images",
    "pad_images",
    "panoptic_inference",
    "prepare_inputs",
    "resize_bilinear",
    "resize_image",
    "resize_mask_logits",
    "resized_shape",
    "semantic_inference",
    "sigmoid",
    "softmax",
]
