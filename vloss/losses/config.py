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
        gather_with_grad: make that gather differentiable (gradients of the global loss reach
            every rank's embeddings); otherwise only the local shard carries gradient.
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
    gather_with_grad: bool = True

    def __post_init__(self) -> None:
        if self.contrastive not in ("clip", "filip"):
            raise ValueError(f"LossConfig.contrastive must be 'clip' or 'filip', got {self.contrastive!r}")
        if self.num_points <= 0:
            raise ValueError(f"LossConfig.num_points must be positive, got {self.num_points}")
        if self.oversample_ratio < 1.0:
            raise ValueError(f"LossConfig.oversample_ratio must be >= 1, got {self.oversample_ratio}")
        if not 0.0 <= self.importance_sample_ratio <= 1.0:
            raise ValueError("LossConfig.importance_sample_ratio must be in [0, 1], "
                             f"got {self.importance_sample_ratio}")
        if self.no_object_weight < 0:
            raise ValueError(f"LossConfig.no_object_weight must be >= 0, got {self.no_object_weight}")
