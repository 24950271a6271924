"""Multi-scale deformable attention (Deformable DETR) in pure PyTorch via ``grid_sample``.

No custom CUDA op: :func:`ms_deform_attn_sample` bilinearly samples each level with
``F.grid_sample`` and sums with the attention weights. It runs on CPU and GPU alike.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def ms_deform_attn_sample(
    value: torch.Tensor, shapes: list[tuple[int, int]], locations: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Sample and aggregate values at fractional locations on every level.

    Args:
        value: ``[B, S, H, Dh]`` values of all levels concatenated (S = sum of h_l * w_l).
        shapes: per level ``(h_l, w_l)``.
        locations: ``[B, Lq, H, L, P, 2]`` sampling points, (x, y) normalised to [0, 1].
        weights: ``[B, Lq, H, L, P]`` attention weights (softmax over L * P).

    Returns:
        ``[B, Lq, H * Dh]`` aggregated values.
    """
    b, _, nh, dh = value.shape
    _, lq, _, nl, npnt, _ = locations.shape
    splits = [h * w for h, w in shapes]
    value_levels = value.split(splits, dim=1)
    grids = 2 * locations - 1  # grid_sample wants [-1, 1]
    sampled = []
    for lvl, (h, w) in enumerate(shapes):
        v = value_levels[lvl].flatten(2).transpose(1, 2).reshape(b * nh, dh, h, w)  # [B*H, Dh, h, w]
        g = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)  # [B*H, Lq, P, 2]
        sampled.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    stacked = torch.stack(sampled, dim=-2).flatten(-2)  # [B*H, Dh, Lq, L*P]
    attn = weights.transpose(1, 2).reshape(b * nh, 1, lq, nl * npnt)  # [B*H, 1, Lq, L*P]
    out = (stacked * attn).sum(-1).view(b, nh * dh, lq)  # [B, H*Dh, Lq]
    return out.transpose(1, 2).contiguous()


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention module.

    Args:
        dim: model width.
        num_levels: feature levels attended.
        num_heads: attention heads.
        num_points: sampling points per head and level.
    """

    def __init__(self, dim: int, num_levels: int, num_heads: int, num_points: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.dim, self.num_levels, self.num_heads, self.num_points = dim, num_levels, num_heads, num_points
        self.sampling_offsets = nn.Linear(dim, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(dim, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable DETR's init: offsets start on a ring of directions, uniform attention."""
        nn.init.zeros_(self.sampling_offsets.weight)
        thetas = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)  # [H, 2]
        grid = grid / grid.abs().max(-1, keepdim=True)[0]
        grid = grid.view(self.num_heads, 1, 1, 2).repeat(1, self.num_levels, self.num_points, 1)
        for i in range(self.num_points):
            grid[:, :, i, :] *= i + 1
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for lin in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(
        self, query: torch.Tensor, reference: torch.Tensor, value: torch.Tensor, shapes: list[tuple[int, int]]
    ) -> torch.Tensor:
        """Attend.

        Args:
            query: ``[B, Lq, D]`` queries (positions already added).
            reference: ``[B, Lq, L, 2]`` reference points, (x, y) in [0, 1].
            value: ``[B, S, D]`` flattened multi-level input.
            shapes: per level ``(h_l, w_l)``; sum of h_l * w_l == S.

        Returns:
            ``[B, Lq, D]``.
        """
        b, lq, _ = query.shape
        s = value.shape[1]
        nh, nl, npnt = self.num_heads, self.num_levels, self.num_points
        v = self.value_proj(value).view(b, s, nh, self.dim // nh)  # [B, S, H, Dh]
        offsets = self.sampling_offsets(query).view(b, lq, nh, nl, npnt, 2)
        attn = self.attention_weights(query).view(b, lq, nh, nl * npnt).softmax(-1).view(b, lq, nh, nl, npnt)
        normalizer = torch.tensor([[w, h] for h, w in shapes], dtype=query.dtype, device=query.device)  # [L, 2]
        loc = reference[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        out = ms_deform_attn_sample(v, shapes, loc.to(v.dtype), attn.to(v.dtype))  # [B, Lq, D]
        return self.output_proj(out)
