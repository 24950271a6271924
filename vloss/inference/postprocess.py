"""Post-processing of one image's query predictions into panoptic / instance / semantic results.

Inputs are the model's outputs for a single image over any vocabulary of ``C`` classes:
``cls_logits`` ``[Q, C+1]`` (last column = no-object) and ``mask_logits`` ``[Q, H, W]``
(already resized to the wanted output size with :func:`resize_mask_logits`). The rules are
Mask2Former's (``MaskFormer.panoptic_inference / instance_inference / semantic_inference``):

* panoptic: keep queries whose best class is not no-object and whose probability exceeds
  ``object_mask_threshold``; each pixel goes to the kept query with the largest
  ``score * sigmoid(mask)``; a query's segment is the pixels it won *and* where its own mask
  probability is >= 0.5; a segment is dropped when it keeps less than ``overlap_threshold`` of
  its own binarised mask; segments of the same stuff class are merged into one id.
* instance: top-k over all (query, class) probabilities of the softmax without no-object;
  masks are ``logit > 0``; the score is the class probability times the mean mask probability
  inside the binary mask.
* semantic: ``sum_q softmax(cls)[q, c] * sigmoid(mask)[q]`` per class.

:func:`forward_padded` runs the network on a batch of already-resized images (zero-padded to a
multiple of the model's size divisor, as in training); the evaluation job, the in-training
validation and the predictor share it.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F


def resize_mask_logits(mask_logits: torch.Tensor, size: tuple[int, int], *,
                       padded_size: tuple[int, int] | None = None,
                       valid_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Bilinearly upsample mask logits to an image size (align_corners=False).

    With ``padded_size`` and ``valid_size`` it follows Mask2Former's two steps for padded
    batches: upsample to the padded input size, crop the valid (unpadded) top-left region,
    then resize that to ``size`` (the original image size).

    Args:
        mask_logits: ``[Q, h, w]`` or ``[B, Q, h, w]``.
        size: output ``(H, W)``.
        padded_size: ``(Hp, Wp)`` of the padded network input the logits cover.
        valid_size: ``(Hv, Wv)`` of the resized image inside that padded input.

    Returns:
        ``[Q, H, W]`` or ``[B, Q, H, W]`` logits.
    """
    if (padded_size is None) != (valid_size is None):
        raise ValueError("padded_size and valid_size must be given together")
    squeeze = mask_logits.dim() == 3
    x = mask_logits[None] if squeeze else mask_logits  # [B, Q, h, w]
    if x.dim() != 4:
        raise ValueError(f"mask_logits must be [Q, h, w] or [B, Q, h, w], got {tuple(mask_logits.shape)}")
    if padded_size is not None:
        if valid_size[0] > padded_size[0] or valid_size[1] > padded_size[1]:
            raise ValueError(f"valid_size {valid_size} exceeds padded_size {padded_size}")
        x = F.interpolate(x, size=tuple(padded_size), mode="bilinear", align_corners=False)
        x = x[..., : valid_size[0], : valid_size[1]]  # [B, Q, Hv, Wv]
    x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)  # [B, Q, H, W]
    return x[0] if squeeze else x


@torch.no_grad()
def forward_padded(model: torch.nn.Module, images: Sequence[np.ndarray], class_embeds: torch.Tensor,
                   device: torch.device | str = "cpu") -> tuple[dict[str, Any], tuple[int, int]]:
    """Run the network on resized images, zero-padded to a common size divisible by its size divisor.

    Args:
        model: a :class:`vloss.model.VLOSS` (in eval mode).
        images: B resized ``[h_b, w_b, 3]`` uint8 RGB images.
        class_embeds: ``[C, Dt]`` class embeddings of the vocabulary.
        device: where the network runs.

    Returns:
        (the network's output for the batch: ``pred_logits [B, Q, C+1]``, ``pred_masks
        [B, Q, Hp/4, Wp/4]``, ...; the padded input size ``(Hp, Wp)``). Crop image b's masks to
        its ``(h_b, w_b)`` with :func:`resize_mask_logits` (``padded_size``/``valid_size``).
    """
    from vloss.data.transforms import normalize_images

    div = model.size_divisor
    hp = int(math.ceil(max(im.shape[0] for im in images) / div) * div)
    wp = int(math.ceil(max(im.shape[1] for im in images) / div) * div)
    padded = np.zeros((len(images), hp, wp, 3), dtype=np.uint8)  # [B, Hp, Wp, 3], zero padding as in training
    for k, im in enumerate(images):
        padded[k, : im.shape[0], : im.shape[1]] = im
    x = normalize_images(padded).to(device)  # [B, 3, Hp, Wp]
    return model(x, class_embeds), (hp, wp)


def _check(cls_logits: torch.Tensor, mask_logits: torch.Tensor,
           is_thing: Sequence[bool] | None) -> int:
    """Validate shapes; return ``C``, the vocabulary size."""
    if cls_logits.dim() != 2 or cls_logits.shape[1] < 2:
        raise ValueError(f"cls_logits must be [Q, C+1] with C >= 1, got {tuple(cls_logits.shape)}")
    if mask_logits.dim() != 3 or mask_logits.shape[0] != cls_logits.shape[0]:
        raise ValueError(f"mask_logits must be [Q={cls_logits.shape[0]}, H, W], "
                         f"got {tuple(mask_logits.shape)}")
    num_classes = cls_logits.shape[1] - 1
    if is_thing is not None and len(is_thing) != num_classes:
        raise ValueError(f"is_thing has {len(is_thing)} entries for a vocabulary of {num_classes} classes")
    return num_classes


@torch.no_grad()
def panoptic_inference(cls_logits: torch.Tensor, mask_logits: torch.Tensor, is_thing: Sequence[bool],
                       object_mask_threshold: float = 0.8,
                       overlap_threshold: float = 0.8) -> tuple[torch.Tensor, list[dict]]:
    """Panoptic segmentation of one image (Mask2Former's rule, see module docstring).

    Args:
        cls_logits: ``[Q, C+1]`` class logits over any vocabulary (last = no-object).
        mask_logits: ``[Q, H, W]`` mask logits at the output resolution.
        is_thing: ``C`` flags, True for thing classes of the vocabulary.
        object_mask_threshold: minimum class probability of a kept query.
        overlap_threshold: minimum share of a query's binarised mask it must keep.

    Returns:
        ``(seg_ids, segments_info)``: ``seg_ids`` int32 ``[H, W]`` (0 = void, segments numbered
        1, 2, ... in query order) and one dict per segment ``{"id", "category"`` (index into the
        vocabulary), ``"isthing", "score"`` (class probability; the highest of a merged stuff
        segment's queries), ``"area"`` (pixels)``}``.
    """
    num_classes = _check(cls_logits, mask_logits, is_thing)
    probs = cls_logits.float().softmax(-1)  # [Q, C+1]
    scores, labels = probs.max(-1)  # [Q], [Q]
    masks = mask_logits.float().sigmoid()  # [Q, H, W]
    keep = labels.ne(num_classes) & (scores > object_mask_threshold)  # [Q]
    cur_scores, cur_classes, cur_masks = scores[keep], labels[keep], masks[keep]
    height, width = masks.shape[-2:]
    seg_ids = torch.zeros((height, width), dtype=torch.int32, device=masks.device)
    if cur_masks.shape[0] == 0:
        return seg_ids, []
    cur_prob_masks = cur_scores[:, None, None] * cur_masks  # [K, H, W]
    winner = cur_prob_masks.argmax(0)  # [H, W]
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
        if mask_area == 0 or original_area == 0 or int(mask.sum()) == 0:
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
    areas = torch.bincount(seg_ids.flatten().long(), minlength=len(segments) + 1)
    for info in segments:
        info["area"] = int(areas[info["id"]])
    return seg_ids, segments


@torch.no_grad()
def instance_inference(cls_logits: torch.Tensor, mask_logits: torch.Tensor, topk: int = 100,
                       is_thing: Sequence[bool] | None = None) -> dict[str, torch.Tensor]:
    """Instance segmentation of one image (Mask2Former's rule, see module docstring).

    When ``is_thing`` is given, stuff classes are excluded *before* the top-k, so up to ``topk``
    thing predictions come back (Mask2Former filters after its top-k, which can return fewer).

    Args:
        cls_logits: ``[Q, C+1]`` class logits over any vocabulary (last = no-object).
        mask_logits: ``[Q, H, W]`` mask logits at the output resolution.
        topk: predictions to keep (clamped to the number of candidates).
        is_thing: optional ``C`` flags; when given, only thing classes are predicted.

    Returns:
        ``{"scores": [K] float, "labels": [K] int64 (index into the vocabulary),
        "masks": [K, H, W] bool, "query": [K] int64}``, ordered by class probability.
    """
    num_classes = _check(cls_logits, mask_logits, is_thing)
    probs = cls_logits.float().softmax(-1)[:, :-1]  # [Q, C]
    if is_thing is not None:
        thing = torch.as_tensor(list(is_thing), dtype=torch.bool, device=probs.device)  # [C]
        class_ids = torch.nonzero(thing).flatten()  # [Ct]
    else:
        class_ids = torch.arange(num_classes, device=probs.device)  # [C]
    cand = probs[:, class_ids].flatten()  # [Q * Ct], query-major
    k = min(int(topk), cand.numel())
    cls_scores, flat = cand.topk(k, sorted=True)  # [K], [K]
    query = flat // class_ids.numel()  # [K]
    labels = class_ids[flat % class_ids.numel()]  # [K]
    logits = mask_logits[query].float()  # [K, H, W]
    masks = logits > 0  # [K, H, W]
    binary = masks.flatten(1).float()  # [K, HW]
    mask_scores = (logits.sigmoid().flatten(1) * binary).sum(1) / (binary.sum(1) + 1e-6)  # [K]
    return {"scores": cls_scores * mask_scores, "labels": labels.long(), "masks": masks,
            "query": query.long()}


@torch.no_grad()
def semantic_inference(cls_logits: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """Per-class semantic scores ``sum_q softmax(cls)[q, c] * sigmoid(mask)[q]``.

    Args:
        cls_logits: ``[Q, C+1]`` class logits (the no-object column is dropped after softmax).
        mask_logits: ``[Q, H, W]`` mask logits.

    Returns:
        ``[C, H, W]`` scores; ``argmax(0)`` gives the semantic label map.
    """
    _check(cls_logits, mask_logits, None)
    probs = cls_logits.float().softmax(-1)[:, :-1]  # [Q, C]
    masks = mask_logits.float().sigmoid()  # [Q, H, W]
    return torch.einsum("qc,qhw->chw", probs, masks)
