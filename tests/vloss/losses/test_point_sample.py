"""Point sampling: exact at pixel centres, bilinear between them, importance sampling picks the top."""

from __future__ import annotations

import pytest
import torch

from vloss.losses import calculate_uncertainty, get_uncertain_point_coords_with_randomness, point_sample
from vloss.losses.point_sample import SAMPLE_KWARGS


def test_pixel_centres_read_exact_values_and_midpoints_average():
    img = torch.arange(12, dtype=torch.float32).reshape(1, 1, 3, 4)  # H=3, W=4
    # pixel (row r, col c) has its centre at x=(c+0.5)/W, y=(r+0.5)/H
    pts = torch.tensor([[[(c + 0.5) / 4, (r + 0.5) / 3] for r in range(3) for c in range(4)]])
    out = point_sample(img, pts, align_corners=False)
    assert torch.allclose(out.flatten(), img.flatten(), atol=1e-5)
    mid = torch.tensor([[[1.0 / 4, 0.5 / 3], [1.0 / 4, 1.0 / 3]]])  # between cols 0/1; between 4 pixels
    vals = point_sample(img, mid, align_corners=False).flatten()
    assert vals[0].item() == pytest.approx(0.5)
    assert vals[1].item() == pytest.approx((0 + 1 + 4 + 5) / 4)


def test_importance_points_are_the_most_uncertain_candidates():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 6, 6, generator=g) * 4
    num_points, over, ratio = 20, 3.0, 0.75
    coords = get_uncertain_point_coords_with_randomness(
        logits, calculate_uncertainty, num_points, over, ratio, generator=torch.Generator().manual_seed(9))
    assert coords.shape == (2, num_points, 2)
    assert bool(((coords >= 0) & (coords <= 1)).all())
    # replay the candidate draw: the first draw of the generator is the oversampled candidates
    cand = torch.rand(2, int(num_points * over), 2, generator=torch.Generator().manual_seed(9))
    k = int(ratio * num_points)
    for n in range(2):
        vals = point_sample(logits[n:n + 1], cand[n:n + 1], align_corners=False,
                            padding_mode="border").flatten()
        chosen = torch.argsort(vals.abs())[:k]  # smallest |logit| = most uncertain
        expected = {tuple(p) for p in cand[n, chosen].tolist()}
        assert {tuple(p) for p in coords[n, :k].tolist()} == expected


def test_uniform_mode_and_bad_ratios():
    logits = torch.zeros(1, 1, 4, 4)
    pts = get_uncertain_point_coords_with_randomness(logits, calculate_uncertainty, 10, 3.0, 0.0,
                                                     generator=torch.Generator().manual_seed(1))
    assert torch.equal(pts, torch.rand(1, 10, 2, generator=torch.Generator().manual_seed(1)))
    with pytest.raises(ValueError, match="importance_sample_ratio"):
        get_uncertain_point_coords_with_randomness(logits, calculate_uncertainty, 10, 3.0, 1.5)
    with pytest.raises(ValueError, match="oversample_ratio"):
        get_uncertain_point_coords_with_randomness(logits, calculate_uncertainty, 10, 0.5, 0.5)


def test_loss_sampling_reads_border_values_at_the_image_edge():
    """A full mask stays 1 up to the image corner (zero padding would read 1/4 there)."""
    full = torch.ones(1, 1, 4, 4)
    corner = torch.tensor([[[0.0, 0.0], [1.0, 1.0], [0.0, 1.0]]])
    assert torch.allclose(point_sample(full, corner, **SAMPLE_KWARGS), torch.ones(1, 1, 3))
    assert torch.allclose(point_sample(full, corner, align_corners=False), torch.full((1, 1, 3), 0.25))
