"""Set criterion of VLOSS: classification, BCE and dice losses on Hungarian-matched queries.

Paper Sec. 3.5 (Eq. 3 and 6), with Mask2Former's details:

* ``loss_cls`` -- cross-entropy over the ``C + 1`` classes (last = no-object). Unmatched queries
  get the no-object label, whose class weight is ``no_object_weight`` (0.1). The average over
  queries (Eq. 3) uses PyTorch's *weighted mean*: ``sum_i w_{y_i} CE_i / sum_i w_{y_i}`` over all
  ``B * Q`` queries, exactly as ``F.cross_entropy(..., weight=w)`` and Mask2Former compute it.
* positive-only mode (detection batches, paper Sec. 3.5 "positive classification loss"): only
  matched queries contribute to ``loss_cls``; unmatched queries are not supervised at all. With
  no no-object labels left, the weighted mean is the plain mean over matched queries.
* ``loss_bce`` / ``loss_dice`` -- on matched pairs only, on ``num_points`` importance-sampled
  points per mask (``oversample_ratio`` 3, ``importance_sample_ratio`` 0.75, uncertainty
  ``-|logit|``), summed over masks and divided by ``num_masks``: the number of target masks in
  the batch, averaged over ranks when ``torch.distributed`` is initialised, clamped to >= 1.
* deep supervision: every entry of ``aux_outputs`` gets the same three terms, keys suffixed
  ``_0``, ``_1``, ... (own matching per layer, as in Mask2Former).

Gradient accumulation (``train.micro_batch``) splits one step's batch into micro-batches. Two
things make the sum of the micro-batches' terms equal the whole batch's terms: the normalisers
(``num_masks`` and the classification weight sum, :meth:`SetCriterion.normalizers`) are computed
once over the whole batch and passed to every micro-batch, and the random points are drawn from
one generator per image (a sequence of generators), so an image draws the same points whichever
micro-batch it is in.

The criterion returns *unweighted* terms; :func:`weighted_total` applies Eq. 6.
``dense_bce_loss`` / ``dense_dice_loss`` are the full-resolution references that the point
estimates converge to (tested).
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence, Union

import torch
import torch.distributed as dist
import torch.nn.functional as F

from vloss.config import LossConfig
from vloss.losses.matcher import HungarianMatcher
from vloss.losses.point_sample import (
    SAMPLE_KWARGS,
    calculate_uncertainty,
    get_uncertain_point_coords_with_randomness,
    point_sample,
)

Indices = list[tuple[torch.Tensor, torch.Tensor]]
Generators = Union[torch.Generator, Sequence[torch.Generator], None]  # one for the batch, or one per image


# --------------------------------------------------------------------------- mask loss formulas
def sigmoid_ce_loss(inputs: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Sigmoid BCE per mask (mean over its points), summed over masks, divided by ``num_masks``.

    Args:
        inputs: mask logits ``[N, P]``.
        targets: target values in ``[0, 1]``, ``[N, P]``.
        num_masks: normaliser (number of masks in the batch, averaged over ranks).

    Returns:
        Scalar loss.
    """
    loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")  # [N, P]
    return loss.mean(1).sum() / num_masks


def dice_loss(inputs: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Dice loss ``1 - (2 sum(p t) + 1) / (sum(p) + sum(t) + 1)`` per mask, summed, over ``num_masks``.

    Args:
        inputs: mask logits ``[N, P]`` (any trailing shape; flattened per mask).
        targets: target values in ``[0, 1]``, same shape.
        num_masks: normaliser.

    Returns:
        Scalar loss.
    """
    probs = inputs.sigmoid().flatten(1)  # [N, P]
    targets = targets.flatten(1)  # [N, P]
    numerator = 2.0 * (probs * targets).sum(-1)  # [N]
    denominator = probs.sum(-1) + targets.sum(-1)  # [N]
    loss = 1.0 - (numerator + 1.0) / (denominator + 1.0)  # [N]
    return loss.sum() / num_masks


def _upsample_to(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (align_corners=False) resize of ``[N, h, w]`` logits to ``[N, *size]``."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def dense_bce_loss(mask_logits: torch.Tensor, target_masks: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Reference BCE on every target pixel (logits bilinearly resized to the target size).

    Args:
        mask_logits: ``[N, h, w]`` predicted mask logits.
        target_masks: ``[N, H, W]`` targets (bool or float).
        num_masks: normaliser.

    Returns:
        Scalar loss; the limit of the uniformly point-sampled BCE as the points grow.
    """
    tgt = target_masks.to(mask_logits.dtype)  # [N, H, W]
    logits = _upsample_to(mask_logits, tuple(tgt.shape[-2:]))  # [N, H, W]
    return sigmoid_ce_loss(logits.flatten(1), tgt.flatten(1), num_masks)


def dense_dice_loss(mask_logits: torch.Tensor, target_masks: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Reference dice on every target pixel (logits bilinearly resized to the target size).

    Note the dice smoothing term ``+1`` is not scale free: the point-sampled dice converges to
    the dense one when sums are expressed per point, i.e. compare at equal point/pixel counts
    or with large masks (see tests).

    Args:
        mask_logits: ``[N, h, w]`` predicted mask logits.
        target_masks: ``[N, H, W]`` targets (bool or float).
        num_masks: normaliser.

    Returns:
        Scalar loss.
    """
    tgt = target_masks.to(mask_logits.dtype)  # [N, H, W]
    logits = _upsample_to(mask_logits, tuple(tgt.shape[-2:]))  # [N, H, W]
    return dice_loss(logits.flatten(1), tgt.flatten(1), num_masks)


# --------------------------------------------------------------------------- helpers
def average_over_ranks(values: Sequence[float], device: torch.device | str = "cpu") -> list[float]:
    """Each value averaged over ranks (one all_reduce / world_size), clamped to >= 1.

    Args:
        values: this rank's normalisers (e.g. its number of target masks, its class-weight sum).
        device: device for the all_reduce tensor (the process group's device, e.g. CUDA for NCCL).
    """
    t = torch.as_tensor(list(values), dtype=torch.float64, device=device).clone()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
        t = t / dist.get_world_size()
    return [float(v) for v in torch.clamp(t, min=1.0).tolist()]


def average_num_masks(num_masks: float | torch.Tensor, device: torch.device | str = "cpu") -> float:
    """Number of masks averaged over ranks (all_reduce / world_size), clamped to >= 1.

    Args:
        num_masks: this rank's number of target masks.
        device: device for the all_reduce tensor (the process group's device, e.g. CUDA for NCCL).

    Returns:
        The normaliser as a Python float.
    """
    return average_over_ranks([float(num_masks)], device=device)[0]


_SUFFIX = re.compile(r"_\d+$")


# The loss terms (Eq. 6) and the LossConfig field of each one's weight: weighted_total sums them and
# the trainer logs them from this table, so a new loss is one entry here plus the code returning it.
LOSS_TERMS: dict[str, str] = {"loss_cls": "cls_weight", "loss_bce": "bce_weight", "loss_dice": "dice_weight",
                              "loss_con": "con_weight"}


def weighted_total(losses: Mapping[str, torch.Tensor], cfg: LossConfig) -> torch.Tensor:
    """Eq. 6: ``lambda_cls L_cls + lambda_bce L_bce + lambda_dice L_dice + lambda_con L_con``.

    Every decoder layer's terms (``loss_cls``, ``loss_cls_0``, ...) get their term's weight.

    Args:
        losses: unweighted terms from :class:`SetCriterion` and/or the contrastive loss.
        cfg: the loss configuration holding the lambdas.

    Returns:
        Scalar total.

    Raises:
        KeyError: for a key that is not a known loss term (nothing is dropped silently).
    """
    weights = {term: getattr(cfg, field) for term, field in LOSS_TERMS.items()}
    if not losses:
        raise ValueError("weighted_total: no loss terms given")
    total = None
    for key, value in losses.items():
        base = _SUFFIX.sub("", key)
        if base not in weights:
            raise KeyError(f"unknown loss term {key!r}; expected one of {sorted(weights)} "
                           "optionally suffixed _<layer>")
        term = weights[base] * value
        total = term if total is None else total + term
    return total


# --------------------------------------------------------------------------- criterion
class SetCriterion:
    """Losses of one segmentation batch (panoptic or detection-with-pseudo-masks).

    Args:
        cfg: loss configuration (weights used by the matcher; sampling settings).
        generator: optional seeded generator for the matcher's and the loss's random points;
            may also be passed per call.
    """

    def __init__(self, cfg: LossConfig, generator: torch.Generator | None = None) -> None:
        self.cfg = cfg
        self.generator = generator
        self.matcher = HungarianMatcher(cost_class=cfg.cls_weight, cost_bce=cfg.bce_weight,
                                        cost_dice=cfg.dice_weight, num_points=cfg.num_points)

    # -- individual terms ---------------------------------------------------------------------
    def loss_cls(self, pred_logits: torch.Tensor, targets: Sequence[Mapping[str, torch.Tensor]],
                 indices: Indices, positive_only: bool, cls_norm: float | None = None) -> torch.Tensor:
        """Cross-entropy over ``C + 1`` classes (Eq. 3, weighted mean; see module docstring).

        Args:
            pred_logits: ``[B, Q, C+1]`` class logits.
            targets: per image ``{"labels": [M], ...}``.
            indices: matching per image.
            positive_only: supervise only matched queries.
            cls_norm: the weighted mean's denominator, given (:meth:`normalizers`: the whole step's
                batch, averaged over ranks); None: this batch's own weight sum (PyTorch's weighted mean).

        Returns:
            Scalar loss.
        """
        bsz, num_queries, num_cls1 = pred_logits.shape
        logits = pred_logits.float()
        batch_idx, query_idx = _prediction_index(indices, pred_logits.device)  # [K], [K]
        matched_labels = torch.cat([t["labels"][j] for t, (_, j) in zip(targets, indices)]).to(
            device=pred_logits.device, dtype=torch.int64)  # [K]
        if positive_only:
            if matched_labels.numel() == 0:
                return logits.sum() * 0.0  # nothing to supervise; keep the graph connected
            if cls_norm is not None:
                return F.cross_entropy(logits[batch_idx, query_idx], matched_labels, reduction="sum") / cls_norm
            return F.cross_entropy(logits[batch_idx, query_idx], matched_labels)
        target_classes = torch.full((bsz, num_queries), num_cls1 - 1, dtype=torch.int64,
                                    device=pred_logits.device)  # [B, Q], all no-object
        target_classes[batch_idx, query_idx] = matched_labels
        class_weight = torch.ones(num_cls1, device=pred_logits.device)  # [C+1]
        class_weight[-1] = self.cfg.no_object_weight
        if cls_norm is not None:
            return F.cross_entropy(logits.transpose(1, 2), target_classes, weight=class_weight,
                                   reduction="sum") / cls_norm
        return F.cross_entropy(logits.transpose(1, 2), target_classes, weight=class_weight)

    def normalizers(self, targets: Sequence[Mapping[str, torch.Tensor]], num_queries: int, positive_only: bool,
                    device: torch.device | str = "cpu") -> tuple[float, float]:
        """The mask-loss and classification normalisers of a whole step's batch, averaged over ranks.

        Both follow from the targets alone (every target is matched while ``Q >= M``), so they can
        be computed before any forward and shared by the micro-batches of an accumulated step.

        Args:
            targets: every image of this rank's step, ``{"labels": [M], ...}``.
            num_queries: ``Q``.
            positive_only: detection batches (no no-object terms in ``loss_cls``).
            device: the process group's device.

        Returns:
            ``(num_masks, cls_norm)``: masks per rank, and the weight sum of ``loss_cls``'s weighted
            mean per rank (matched queries + ``no_object_weight`` x unmatched ones), both >= 1.
        """
        masks = sum(int(t["labels"].shape[0]) for t in targets)
        matched = sum(min(num_queries, int(t["labels"].shape[0])) for t in targets)
        cls = matched if positive_only else \
            matched + self.cfg.no_object_weight * (len(targets) * num_queries - matched)
        num_masks, cls_norm = average_over_ranks([masks, cls], device=device)
        return num_masks, cls_norm

    def loss_masks(self, pred_masks: torch.Tensor, targets: Sequence[Mapping[str, torch.Tensor]],
                   indices: Indices, num_masks: float,
                   generator: Generators = None) -> dict[str, torch.Tensor]:
        """BCE and dice of matched masks on importance-sampled points.

        Args:
            pred_masks: ``[B, Q, h, w]`` mask logits.
            targets: per image ``{"masks": [M, H, W], ...}`` (sizes may differ between images).
            indices: matching per image.
            num_masks: normaliser from :func:`average_num_masks`.
            generator: optional seeded generator for the points, or one per image.

        Returns:
            ``{"loss_bce": scalar, "loss_dice": scalar}``.
        """
        batch_idx, query_idx = _prediction_index(indices, pred_masks.device)  # [K], [K]
        if batch_idx.numel() == 0:
            zero = pred_masks.sum() * 0.0
            return {"loss_bce": zero, "loss_dice": zero.clone()}
        src = pred_masks[batch_idx, query_idx].float()[:, None]  # [K, 1, h, w]
        with torch.no_grad():
            if isinstance(generator, (list, tuple)):  # each image draws its own masks' points
                counts = [int(j.numel()) for _, j in indices]
                coords = torch.cat([get_uncertain_point_coords_with_randomness(
                    part, calculate_uncertainty, self.cfg.num_points, self.cfg.oversample_ratio,
                    self.cfg.importance_sample_ratio, generator=generator[b])
                    for b, part in enumerate(src.detach().split(counts)) if counts[b]])  # [K, P, 2]
            else:
                coords = get_uncertain_point_coords_with_randomness(
                    src.detach(), calculate_uncertainty, self.cfg.num_points,
                    self.cfg.oversample_ratio, self.cfg.importance_sample_ratio,
                    generator=generator)  # [K, P, 2]
            labels = []
            start = 0
            for tgt, (_, tgt_idx) in zip(targets, indices):
                n = tgt_idx.numel()
                if n == 0:
                    continue
                masks = tgt["masks"][tgt_idx.to(tgt["masks"].device)]  # [n, H, W]
                masks = masks.to(device=src.device, dtype=torch.float32)[:, None]  # [n, 1, H, W]
                labels.append(point_sample(masks, coords[start:start + n],
                                           **SAMPLE_KWARGS)[:, 0])  # [n, P]
                start += n
            point_labels = torch.cat(labels)  # [K, P]
        point_logits = point_sample(src, coords, **SAMPLE_KWARGS)[:, 0]  # [K, P]
        return {"loss_bce": sigmoid_ce_loss(point_logits, point_labels, num_masks),
                "loss_dice": dice_loss(point_logits, point_labels, num_masks)}

    # -- all terms ------------------------------------------------------------------------------
    def layer_losses(self, outputs: Mapping[str, torch.Tensor], targets: Sequence[Mapping[str, torch.Tensor]],
                     positive_only: bool, num_masks: float, generator: Generators,
                     cls_norm: float | None = None) -> dict[str, torch.Tensor]:
        """Match and compute the three terms for one decoder layer's predictions.

        Args:
            outputs: ``{"pred_logits": [B, Q, C+1], "pred_masks": [B, Q, h, w]}``.
            targets: per-image target dicts.
            positive_only: positive-only classification loss.
            num_masks: mask-loss normaliser.
            generator: optional seeded generator, or one per image.
            cls_norm: ``loss_cls``'s denominator (None: this batch's weighted mean).

        Returns:
            ``{"loss_cls", "loss_bce", "loss_dice"}``.
        """
        indices = self.matcher(outputs, targets, generator=generator)
        losses = {"loss_cls": self.loss_cls(outputs["pred_logits"], targets, indices, positive_only, cls_norm)}
        losses.update(self.loss_masks(outputs["pred_masks"], targets, indices, num_masks, generator))
        return losses

    def __call__(self, outputs: Mapping, targets: Sequence[Mapping[str, torch.Tensor]],
                 positive_only: bool = False, num_masks: float | None = None,
                 generator: Generators = None, cls_norm: float | None = None) -> dict[str, torch.Tensor]:
        """All unweighted loss terms of a segmentation batch.

        Args:
            outputs: model output contract: ``pred_logits`` ``[B, Q, C+1]``, ``pred_masks``
                ``[B, Q, h, w]``, optional ``aux_outputs`` (list of dicts with the same keys).
            targets: ``B`` dicts: ``labels`` int64 ``[M]`` in ``[0, C)``, ``masks`` ``[M, H, W]``.
            positive_only: detection batches: ``loss_cls`` only on matched queries.
            num_masks: override of the mask normaliser (default: targets' masks averaged over
                ranks, clamped to >= 1).
            generator: seeded generator for all random points, or a sequence of ``B`` generators,
                one per image (default: the one given at construction, else torch's global RNG).
            cls_norm: override of ``loss_cls``'s denominator (:meth:`normalizers`; default: the
                batch's own weighted mean).

        Returns:
            ``{"loss_cls", "loss_bce", "loss_dice"}`` for the last layer plus the same keys with
            suffix ``_i`` for ``aux_outputs[i]`` when ``cfg.deep_supervision``.
        """
        generator = generator if generator is not None else self.generator
        if num_masks is None:
            total = sum(int(t["labels"].shape[0]) for t in targets)
            num_masks = average_num_masks(total, device=outputs["pred_logits"].device)
        if isinstance(generator, (list, tuple)) and len(generator) != len(targets):
            raise ValueError(f"{len(generator)} generators for a batch of {len(targets)} images")
        losses = self.layer_losses(outputs, targets, positive_only, num_masks, generator, cls_norm)
        if self.cfg.deep_supervision:
            for i, aux in enumerate(outputs.get("aux_outputs") or []):
                layer = self.layer_losses(aux, targets, positive_only, num_masks, generator, cls_norm)
                losses.update({f"{k}_{i}": v for k, v in layer.items()})
        return losses


def _prediction_index(indices: Indices, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten per-image matches into (batch index ``[K]``, query index ``[K]``)."""
    if not indices:
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        return empty, empty
    batch_idx = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)])
    query_idx = torch.cat([src for src, _ in indices])
    return batch_idx.to(device), query_idx.to(device)
