"""Loss configuration (paper Sec. 3.5 and 4.2)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LossConfig:
    """Weights and sampling settings of the VLOSS objective (Eq. 6).

    Args:
        cls_weight: lambda_cls for the (C+1)-way cross-entropy (paper: 2.0).
        bce_weight: lambda_bce for the sigmoid BCE mask loss (paper: 5.0).
        dice_weight: lambda_dice for the dice mask loss (paper: 5.0).
        con_weight: lambda_con for the image-text contrastive loss (paper: 1.0).
        no_object_weight: cross-entropy weight of the "no-object" class (Mask2Former: 0.1).
        num_points: points sampled per mask for matching and for the mask losses.
        oversample_ratio: importance sampling oversampling ratio (Mask2Former: 3.0).
        importance_sample_ratio: share of points taken from the most uncertain ones (0.75).
        positive_only_detection: use positive-only classification loss on detection batches.
        deep_supervision: supervise every decoder layer, not only the last.
        contrastive: "clip" (global InfoNCE, Eq. 5) or "filip" (token-wise, Table 6 ablation).
        gather_contrastive: gather embeddings across ranks for more negatives.
    """

    cls_weight: float = 2.0
    bce_weight: float = 5.0
    dice_weight: float = 5.0
    con_weight: float = 1.0
    no_object_weight: float = 0.1
    num_points: int = 12544
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75
    positive_only_detection: bool = True
    deep_supervision: bool = True
    contrastive: str = "clip"
    gather_contrastive: bool = True
