"""Hungarian matching between predicted queries and ground-truth segments (DETR / Mask2Former).

For every image the cost of assigning query ``q`` to target ``m`` is

    C[q, m] = w_cls * (-p_q(label_m)) + w_bce * BCE(q, m) + w_dice * Dice(q, m)

where ``p_q`` is the softmax over the ``C + 1`` classes (last = no-object) and both mask costs
are evaluated on ``num_points`` uniformly random points shared by all predictions and targets
of that image. ``scipy.optimize.linear_sum_assignment`` then picks the minimum-cost one-to-one
assignment of ``min(Q, M)`` pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from vloss.losses.point_sample import SAMPLE_KWARGS, point_sample, random_points


def pairwise_sigmoid_ce(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean sigmoid BCE between every prediction and every target over shared points.

    Args:
        inputs: mask logits at the points, ``[Q, P]``.
        targets: target values in ``[0, 1]`` at the same points, ``[M, P]``.

    Returns:
        ``[Q, M]`` cost, ``cost[q, m] = mean_p BCEWithLogits(inputs[q, p], targets[m, p])``.
    """
    num_points = inputs.shape[1]
    pos = F.binary_cross_entropy_with_logits(inputs, torch.ones_like(inputs), reduction="none")  # [Q, P]
    neg = F.binary_cross_entropy_with_logits(inputs, torch.zeros_like(inputs), reduction="none")  # [Q, P]
    # BCE is linear in the target: t * pos + (1 - t) * neg, summed over points as two matmuls.
    cost = pos @ targets.T + neg @ (1.0 - targets).T  # [Q, M]
    return cost / num_points


def pairwise_dice(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Dice cost ``1 - (2 |p * t| + 1) / (|p| + |t| + 1)`` between every prediction and target.

    Args:
        inputs: mask logits at the points, ``[Q, P]``.
        targets: target values in ``[0, 1]`` at the same points, ``[M, P]``.

    Returns:
        ``[Q, M]`` cost.
    """
    probs = inputs.sigmoid()  # [Q, P]
    numerator = 2.0 * (probs @ targets.T)  # [Q, M]
    denominator = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]  # [Q, M]
    return 1.0 - (numerator + 1.0) / (denominator + 1.0)


@dataclass
class HungarianMatcher:
    """One-to-one assignment of queries to targets, per image.

    Args:
        cost_class: weight of the classification cost (Mask2Former: 2.0).
        cost_bce: weight of the sigmoid BCE mask cost (Mask2Former: 5.0).
        cost_dice: weight of the dice mask cost (Mask2Former: 5.0).
        num_points: uniformly random points per image on which mask costs are computed.
    """

    cost_class: float = 2.0
    cost_bce: float = 5.0
    cost_dice: float = 5.0
    num_points: int = 12544

    def __post_init__(self) -> None:
        if self.cost_class == 0 and self.cost_bce == 0 and self.cost_dice == 0:
            raise ValueError("all matcher costs are 0")
        if self.num_points <= 0:
            raise ValueError(f"num_points must be positive, got {self.num_points}")

    @torch.no_grad()
    def cost_matrix(self, pred_logits: torch.Tensor, pred_masks: torch.Tensor,
                    labels: torch.Tensor, masks: torch.Tensor, *,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """Matching cost of one image.

        Args:
            pred_logits: class logits ``[Q, C+1]``.
            pred_masks: mask logits ``[Q, h, w]``.
            labels: target classes ``[M]`` in ``[0, C)``.
            masks: target masks ``[M, H, W]`` (bool or float; any resolution).
            generator: optional seeded generator for the shared random points.

        Returns:
            ``[Q, M]`` float32 cost on the CPU.
        """
        num_queries = pred_logits.shape[0]
        num_targets = labels.shape[0]
        if num_targets == 0:
            return torch.zeros(num_queries, 0)
        probs = pred_logits.float().softmax(-1)  # [Q, C+1]
        cost_class = -probs[:, labels]  # [Q, M]
        out_mask = pred_masks.float()[:, None]  # [Q, 1, h, w]
        tgt_mask = masks.to(device=out_mask.device, dtype=torch.float32)[:, None]  # [M, 1, H, W]
        coords = random_points(1, self.num_points, device=out_mask.device,
                               generator=generator)  # [1, P, 2]
        out_pts = point_sample(out_mask, coords.expand(num_queries, -1, -1),
                               **SAMPLE_KWARGS)[:, 0]  # [Q, P]
        tgt_pts = point_sample(tgt_mask, coords.expand(num_targets, -1, -1),
                               **SAMPLE_KWARGS)[:, 0]  # [M, P]
        cost = (self.cost_bce * pairwise_sigmoid_ce(out_pts, tgt_pts)
                + self.cost_dice * pairwise_dice(out_pts, tgt_pts)
                + self.cost_class * cost_class)  # [Q, M]
        return cost.cpu()

    @torch.no_grad()
    def __call__(self, outputs: Mapping[str, torch.Tensor], targets: Sequence[Mapping[str, torch.Tensor]],
                 *, generator: torch.Generator | Sequence[torch.Generator] | None = None
                 ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Match every image of the batch.

        Args:
            outputs: ``{"pred_logits": [B, Q, C+1], "pred_masks": [B, Q, h, w], ...}``.
            targets: ``B`` dicts with ``"labels"`` ``[M]`` and ``"masks"`` ``[M, H, W]``.
            generator: optional seeded generator for the random points, or one per image.

        Returns:
            Per image ``(query_idx, target_idx)``, two int64 CPU tensors of length ``min(Q, M)``;
            ``query_idx`` is sorted ascending (scipy's row order).
        """
        pred_logits = outputs["pred_logits"]  # [B, Q, C+1]
        pred_masks = outputs["pred_masks"]  # [B, Q, h, w]
        if len(targets) != pred_logits.shape[0]:
            raise ValueError(f"{len(targets)} targets for a batch of {pred_logits.shape[0]} predictions")
        num_classes = pred_logits.shape[-1] - 1
        indices = []
        for b, tgt in enumerate(targets):
            labels = tgt["labels"]
            masks = tgt["masks"]
            check_target(b, labels, masks, num_classes)
            gen = generator[b] if isinstance(generator, (list, tuple)) else generator
            cost = self.cost_matrix(pred_logits[b], pred_masks[b], labels.to(pred_logits.device),
                                    masks, generator=gen)  # [Q, M]
            if not torch.isfinite(cost).all():
                raise ValueError(f"image {b} of the batch: matching cost is not finite "
                                 "(NaN/inf in pred_logits or pred_masks)")
            rows, cols = linear_sum_assignment(cost.numpy())
            indices.append((torch.as_tensor(rows, dtype=torch.int64),
                            torch.as_tensor(cols, dtype=torch.int64)))
        return indices


def check_target(index: int, labels: torch.Tensor, masks: torch.Tensor, num_classes: int) -> None:
    """Validate one target dict, naming the batch index and the field on failure.

    Args:
        index: position of the image in the batch.
        labels: ``[M]`` integer classes.
        masks: ``[M, H, W]`` masks.
        num_classes: ``C``, the number of real classes (labels must lie in ``[0, C)``).
    """
    if labels.dim() != 1 or labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"target {index} field 'labels': expected a 1-d integer tensor, "
                         f"got shape {tuple(labels.shape)} dtype {labels.dtype}")
    if masks.dim() != 3 or masks.shape[0] != labels.shape[0]:
        raise ValueError(f"target {index} field 'masks': expected [M={labels.shape[0]}, H, W], "
                         f"got shape {tuple(masks.shape)}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"target {index} field 'labels': values must be in [0, {num_classes}), "
                         f"got min {int(labels.min())} max {int(labels.max())}")
