"""Point sampling of mask logits and targets (Mask2Former / PointRend style).

Masks are compared on a few thousand points instead of every pixel. Points are given in
normalised image coordinates ``[0, 1] x [0, 1]`` (x first, then y), so a prediction at
``H/4 x W/4`` and a target at ``H x W`` are read at the same physical location; values between
pixel centres are bilinearly interpolated by ``torch.nn.functional.grid_sample`` with
``align_corners=False`` (pixel ``i`` of a length-``n`` axis has its centre at ``(i + 0.5) / n``).
The losses and the matcher read with ``padding_mode="border"`` (:data:`SAMPLE_KWARGS`), a
deliberate difference from Mask2Former, which keeps grid_sample's default ``"zeros"``: with zero
padding every point in the outer half-pixel ring of a map blends with 0, i.e. logits are pulled
toward 0 (probability 0.5) and targets toward background there. For an ``H/4`` prediction of
16 x 16 that ring is 12% of the image, and it biased the sampled BCE by ~3% against the dense
loss in our measurement. With border padding the uniformly sampled losses are unbiased estimates
of the dense losses on the bilinearly upsampled logits (tested).

All random draws take an optional ``torch.Generator`` so that matching and losses can be
made deterministic in tests.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

SAMPLE_KWARGS = {"align_corners": False, "padding_mode": "border"}
"""grid_sample settings used by the matcher and the criterion (see module docstring)."""


def point_sample(inputs: torch.Tensor, point_coords: torch.Tensor, **kwargs) -> torch.Tensor:
    """Read ``inputs`` at normalised point coordinates with bilinear interpolation.

    Args:
        inputs: feature maps ``[N, C, H, W]``.
        point_coords: points in ``[0, 1]`` coordinates (x, y), ``[N, P, 2]`` or ``[N, Hp, Wp, 2]``.
        **kwargs: forwarded to ``F.grid_sample`` (the losses pass :data:`SAMPLE_KWARGS`).

    Returns:
        ``[N, C, P]`` for 3-d ``point_coords``, otherwise ``[N, C, Hp, Wp]``.
    """
    add_dim = point_coords.dim() == 3
    if add_dim:
        point_coords = point_coords.unsqueeze(2)  # [N, P, 1, 2]
    grid = 2.0 * point_coords.to(inputs.dtype) - 1.0  # [0,1] -> grid_sample's [-1,1]
    out = F.grid_sample(inputs, grid, **kwargs)  # [N, C, P, 1] or [N, C, Hp, Wp]
    if add_dim:
        out = out.squeeze(3)  # [N, C, P]
    return out


def random_points(num_masks: int, num_points: int, *, device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.float32,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform random points in the unit square.

    The draw happens on the generator's device (so one CPU generator can seed runs on any
    device) and the result is moved to ``device``.

    Args:
        num_masks: number of point sets ``N``.
        num_points: points per set ``P``.
        device: device of the returned tensor.
        dtype: floating dtype of the returned tensor.
        generator: optional seeded generator.

    Returns:
        ``[N, P, 2]`` coordinates in ``[0, 1)``.
    """
    gen_device = generator.device if generator is not None else torch.device(device)
    pts = torch.rand(num_masks, num_points, 2, generator=generator, device=gen_device,
                     dtype=torch.float32)  # [N, P, 2]
    return pts.to(device=device, dtype=dtype)


def calculate_uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """Uncertainty of a binary mask logit: ``-|logit|`` (highest at the decision boundary).

    Args:
        logits: mask logits of any shape, e.g. ``[N, 1, P]``.

    Returns:
        Tensor of the same shape.
    """
    return -torch.abs(logits)


def get_uncertain_point_coords_with_randomness(
    coarse_logits: torch.Tensor,
    uncertainty_func: Callable[[torch.Tensor], torch.Tensor],
    num_points: int,
    oversample_ratio: float,
    importance_sample_ratio: float,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Importance sampling of points (PointRend, as used by Mask2Former's criterion).

    ``int(num_points * oversample_ratio)`` uniform candidates are drawn per mask; the
    ``int(importance_sample_ratio * num_points)`` most uncertain of them are kept and the rest
    of the ``num_points`` are fresh uniform points. With ``importance_sample_ratio=0`` this is
    plain uniform sampling (an unbiased estimate of the dense mean).

    Args:
        coarse_logits: mask logits ``[N, 1, H, W]`` (callers pass them detached).
        uncertainty_func: maps point logits ``[N, 1, P]`` to uncertainties ``[N, 1, P]``.
        num_points: points ``P`` to return per mask.
        oversample_ratio: candidate oversampling factor, ``>= 1``.
        importance_sample_ratio: share of points taken from the most uncertain candidates, in ``[0, 1]``.
        generator: optional seeded generator.

    Returns:
        ``[N, P, 2]`` point coordinates in ``[0, 1]``.
    """
    if oversample_ratio < 1:
        raise ValueError(f"oversample_ratio must be >= 1, got {oversample_ratio}")
    if not 0.0 <= importance_sample_ratio <= 1.0:
        raise ValueError(f"importance_sample_ratio must be in [0, 1], got {importance_sample_ratio}")
    num_masks = coarse_logits.shape[0]
    device, dtype = coarse_logits.device, coarse_logits.dtype
    num_uncertain = int(importance_sample_ratio * num_points)
    num_random = num_points - num_uncertain
    parts = []
    if num_uncertain > 0:
        num_sampled = int(num_points * oversample_ratio)
        cand = random_points(num_masks, num_sampled, device=device, dtype=dtype,
                             generator=generator)  # [N, S, 2]
        cand_logits = point_sample(coarse_logits, cand, **SAMPLE_KWARGS)  # [N, 1, S]
        unc = uncertainty_func(cand_logits)[:, 0, :]  # [N, S]
        idx = torch.topk(unc, k=num_uncertain, dim=1).indices  # [N, U]
        parts.append(torch.gather(cand, 1, idx.unsqueeze(-1).expand(-1, -1, 2)))  # [N, U, 2]
    if num_random > 0:
        parts.append(random_points(num_masks, num_random, device=device, dtype=dtype,
                                   generator=generator))  # [N, R, 2]
    return torch.cat(parts, dim=1)  # [N, P, 2]
