"""Deformable multi-scale encoder (``encoder.kind = "deform"``), Mask2Former's
``MSDeformAttnPixelDecoder``: the baseline of paper Table 3 and Table 5.

Deformable attention layers run jointly over f0..f2 (strides 32/16/8) with sine positions
plus a learned level embedding; an FPN lateral + output conv then builds the stride-4 map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vloss.model.encoders.fpn import TopDownFPN
from vloss.model.encoders.ms_deform_attn import MSDeformAttn
from vloss.model.layers import ConvNormAct, sine_position_2d


class DeformEncoderLayer(nn.Module):
    """Post-norm deformable self-attention + FFN.

    Args:
        dim: width.
        num_levels: levels attended.
        num_heads: heads.
        num_points: points per head and level.
        ffn_dim: feed-forward width.
        dropout: dropout rate.
    """

    def __init__(self, dim: int, num_levels: int, num_heads: int, num_points: int, ffn_dim: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.attn = MSDeformAttn(dim, num_levels, num_heads, num_points)
        self.norm1 = nn.LayerNorm(dim)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, src: torch.Tensor, pos: torch.Tensor, reference: torch.Tensor,
                shapes: list[tuple[int, int]]) -> torch.Tensor:
        """Args: src/pos ``[B, S, D]``; reference ``[B, S, L, 2]``. Returns ``[B, S, D]``."""
        src = self.norm1(src + self.dropout(self.attn(src + pos, reference, src, shapes)))
        src = self.norm2(src + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(src))))))
        return src


def encoder_reference_points(shapes: list[tuple[int, int]], batch: int, num_levels: int,
                             device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Pixel-centre reference points of every level (no padding: valid ratio 1).

    Returns:
        ``[B, S, L, 2]`` normalised (x, y), identical for every attended level.
    """
    refs = []
    for h, w in shapes:
        y = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        x = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        yy, xx = torch.meshgrid(y, x, indexing="ij")
        refs.append(torch.stack((xx.flatten(), yy.flatten()), -1))  # [h*w, 2]
    ref = torch.cat(refs, 0).to(dtype)  # [S, 2]
    return ref[None, :, None, :].expand(batch, -1, num_levels, 2)


class DeformEncoder(nn.Module):
    """Deformable attention over f0..f2 + FPN for the stride-4 map.

    Args:
        in_channels: backbone channels, highest resolution first.
        hidden_dim: width of f'0..f'2.
        mask_dim: width of the mask features f'3.
        num_layers: deformable encoder layers.
        num_heads: attention heads.
        ffn_dim: feed-forward width.
        num_points: sampling points per head and level.
        dropout: dropout rate.
    """

    num_levels = 3

    def __init__(self, in_channels: list[int], hidden_dim: int, mask_dim: int, num_layers: int,
                 num_heads: int, ffn_dim: int, num_points: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        coarse_first = [in_channels[3], in_channels[2], in_channels[1]]
        self.input_proj = nn.ModuleList(ConvNormAct(c, hidden_dim, 1, act=False) for c in coarse_first)
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
        self.level_embed = nn.Parameter(torch.empty(self.num_levels, hidden_dim))
        nn.init.normal_(self.level_embed)
        self.layers = nn.ModuleList(
            DeformEncoderLayer(hidden_dim, self.num_levels, num_heads, num_points, ffn_dim, dropout)
            for _ in range(num_layers)
        )
        self.fpn = TopDownFPN([in_channels[0]], hidden_dim)
        self.mask_proj = nn.Conv2d(hidden_dim, mask_dim, 1)

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Refine the backbone maps.

        Args:
            feats: ``[s4, s8, s16, s32]`` backbone maps.

        Returns:
            ``(mask_features [B, M, H/4, W/4], [f'0, f'1, f'2])``.
        """
        srcs, poss, shapes = [], [], []
        for lvl, (proj, feat) in enumerate(zip(self.input_proj, [feats[3], feats[2], feats[1]])):
            x = proj(feat)  # [B, D, h, w]
            b, d, h, w = x.shape
            pos = sine_position_2d(b, h, w, d, x.device, x.dtype).flatten(2).transpose(1, 2)  # [B, hw, D]
            srcs.append(x.flatten(2).transpose(1, 2))
            poss.append(pos + self.level_embed[lvl].to(x.dtype)[None, None])
            shapes.append((h, w))
        src = torch.cat(srcs, 1)  # [B, S, D]
        pos = torch.cat(poss, 1)  # [B, S, D]
        ref = encoder_reference_points(shapes, src.shape[0], self.num_levels, src.device, src.dtype)
        for layer in self.layers:
            src = layer(src, pos, ref, shapes)
        outs = []
        for chunk, (h, w) in zip(src.split([h * w for h, w in shapes], 1), shapes):
            outs.append(chunk.transpose(1, 2).reshape(src.shape[0], -1, h, w))  # [B, D, h, w]
        (f3,) = self.fpn(outs[-1], [feats[0]])
        return self.mask_proj(f3), outs
