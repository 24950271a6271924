"""Pure-PyTorch multi-scale deformable attention against a brute-force bilinear reference."""

from __future__ import annotations

import math

import torch

from vloss.model.encoders.deform import encoder_reference_points
from vloss.model.encoders.ms_deform_attn import MSDeformAttn, ms_deform_attn_sample


def bilinear_zero_pad(img: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """Sample ``img [C, h, w]`` at normalised (x, y) in [0, 1] (pixel centres at (i + 0.5) / size), zeros outside."""
    _, h, w = img.shape
    px, py = x * w - 0.5, y * h - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros(img.shape[0], dtype=img.dtype)
    for yy in (y0, y0 + 1):
        for xx in (x0, x0 + 1):
            weight = (1 - abs(px - xx)) * (1 - abs(py - yy))
            if 0 <= xx < w and 0 <= yy < h:
                out += weight * img[:, yy, xx]
    return out


def test_sampling_matches_brute_force() -> None:
    torch.manual_seed(0)
    b, nh, dh, npnt, lq = 2, 2, 3, 2, 4
    shapes = [(2, 3), (4, 5), (3, 3)]
    s = sum(h * w for h, w in shapes)
    value = torch.randn(b, s, nh, dh, dtype=torch.float64)
    loc = torch.rand(b, lq, nh, len(shapes), npnt, 2, dtype=torch.float64) * 1.4 - 0.2  # some outside [0, 1]
    weights = torch.rand(b, lq, nh, len(shapes), npnt, dtype=torch.float64)
    got = ms_deform_attn_sample(value, shapes, loc, weights)  # [B, Lq, H*Dh]
    starts = [0]
    for h, w in shapes:
        starts.append(starts[-1] + h * w)
    ref = torch.zeros(b, lq, nh, dh, dtype=torch.float64)
    for bi in range(b):
        for q in range(lq):
            for hi in range(nh):
                for lvl, (h, w) in enumerate(shapes):
                    img = value[bi, starts[lvl]:starts[lvl + 1], hi].t().reshape(dh, h, w)
                    for p in range(npnt):
                        x, y = loc[bi, q, hi, lvl, p].tolist()
                        ref[bi, q, hi] += weights[bi, q, hi, lvl, p] * bilinear_zero_pad(img, x, y)
    torch.testing.assert_close(got, ref.reshape(b, lq, nh * dh))


def test_zero_offsets_sample_the_reference_pixel() -> None:
    """With offsets 0 and all weight on one level, each query reads its own pixel's projected value."""
    torch.manual_seed(0)
    attn = MSDeformAttn(dim=8, num_levels=2, num_heads=2, num_points=1).double()
    with torch.no_grad():
        attn.sampling_offsets.bias.zero_()
        attn.attention_weights.bias.copy_(torch.tensor([50.0, -50.0] * 2))  # level 0 only, per head
        attn.output_proj.weight.copy_(torch.eye(8))
        attn.output_proj.bias.zero_()
    shapes = [(3, 4), (2, 2)]
    s = 3 * 4 + 2 * 2
    src = torch.randn(1, s, 8, dtype=torch.float64)
    ref = encoder_reference_points(shapes, 1, 2, src.device, src.dtype)
    out = attn(src, ref, src, shapes)
    expected = attn.value_proj(src)[:, :12]
    torch.testing.assert_close(out[:, :12], expected, atol=1e-8, rtol=1e-6)


def test_reference_points_are_pixel_centres() -> None:
    ref = encoder_reference_points([(2, 4)], 1, 3, torch.device("cpu"), torch.float32)
    assert ref.shape == (1, 8, 3, 2)
    torch.testing.assert_close(ref[0, :, 0, 0], torch.tensor([0.125, 0.375, 0.625, 0.875] * 2))
    torch.testing.assert_close(ref[0, :, 0, 1], torch.tensor([0.25] * 4 + [0.75] * 4))
