"""Training objectives: Hungarian matcher, set criterion (cls/BCE/dice), contrastive loss."""

from vloss.config import LossConfig
from vloss.losses.contrastive import (
    ContrastiveLoss,
    clip_contrastive_loss,
    filip_contrastive_loss,
    filip_similarity,
    gather_batch,
)
from vloss.losses.criterion import (
    LOSS_TERMS,
    SetCriterion,
    average_num_masks,
    dense_bce_loss,
    dense_dice_loss,
    dice_loss,
    sigmoid_ce_loss,
    weighted_total,
)
from vloss.losses.matcher import HungarianMatcher, pairwise_dice, pairwise_sigmoid_ce
from vloss.losses.point_sample import (
    SAMPLE_KWARGS,
    calculate_uncertainty,
    get_uncertain_point_coords_with_randomness,
    point_sample,
    random_points,
)

__all__ = [
    "LOSS_TERMS",
    "LossConfig",
    "ContrastiveLoss",
    "clip_contrastive_loss",
    "filip_contrastive_loss",
    "filip_similarity",
    "gather_batch",
    "SetCriterion",
    "average_num_masks",
    "dense_bce_loss",
    "dense_dice_loss",
    "dice_loss",
    "sigmoid_ce_loss",
    "weighted_total",
    "HungarianMatcher",
    "pairwise_dice",
    "pairwise_sigmoid_ce",
    "SAMPLE_KWARGS",
    "calculate_uncertainty",
    "get_uncertain_point_coords_with_randomness",
    "point_sample",
    "random_points",
]
