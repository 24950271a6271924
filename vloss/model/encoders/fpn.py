"""Convolution-only FPN encoder (``encoder.kind = "fpn"``, paper Table 5 "FPN Encoder").

Also provides :class:`TopDownFPN`, the lateral + top-down convolution path that the
FPN-style and deformable encoders reuse for their larger maps.

Every encoder takes the backbone maps highest-resolution first ``[s4, s8, s16, s32]`` and
returns ``(mask_features, [f'0, f'1, f'2])``: f'0 at stride 32, f'1 at 16, f'2 at 8 (the
maps the decoder attends to) and the mask features f'3 at stride 4.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vloss.model.layers import ConvNormAct


class TopDownFPN(nn.Module):
    """FPN lateral + top-down fusion from a coarse refined map to larger backbone maps.

    Args:
        in_channels: channels of the larger backbone maps, coarsest first (e.g. [384, 192, 96]).
        hidden_dim: width of the refined maps.
    """

    def __init__(self, in_channels: list[int], hidden_dim: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(ConvNormAct(c, hidden_dim, 1, act=False) for c in in_channels)
        self.output = nn.ModuleList(ConvNormAct(hidden_dim, hidden_dim, 3) for _ in in_channels)

    def forward(self, top: torch.Tensor, larger: list[torch.Tensor]) -> list[torch.Tensor]:
        """Fuse downwards.

        Args:
            top: ``[B, D, h, w]`` refined coarse map.
            larger: backbone maps ``[B, C_i, H_i, W_i]``, coarsest first, each 2x the previous.

        Returns:
            refined maps ``[B, D, H_i, W_i]`` in the same order as ``larger``.
        """
        outs = []
        y = top
        for feat, lat, out in zip(larger, self.lateral, self.output):
            y = lat(feat) + F.interpolate(y, size=feat.shape[-2:], mode="nearest")  # [B, D, H_i, W_i]
            y = out(y)
            outs.append(y)
        return outs


class FPNEncoder(nn.Module):
    """Mask2Former's ``BasePixelDecoder``: a 3x3 conv on f0, then FPN top-down fusion.

    Args:
        in_channels: backbone channels, highest resolution first (e.g. [96, 192, 384, 768]).
        hidden_dim: width of f'0..f'2.
        mask_dim: width of the mask features f'3.
    """

    def __init__(self, in_channels: list[int], hidden_dim: int, mask_dim: int) -> None:
        super().__init__()
        self.top = ConvNormAct(in_channels[3], hidden_dim, 3)
        self.fpn = TopDownFPN([in_channels[2], in_channels[1], in_channels[0]], hidden_dim)
        self.mask_proj = nn.Conv2d(hidden_dim, mask_dim, 1)

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Refine the backbone maps.

        Args:
            feats: ``[s4, s8, s16, s32]`` backbone maps.

        Returns:
            ``(mask_features [B, M, H/4, W/4], [f'0, f'1, f'2])``.
        """
        f0 = self.top(feats[3])  # [B, D, H/32, W/32]
        f1, f2, f3 = self.fpn(f0, [feats[2], feats[1], feats[0]])
        return self.mask_proj(f3), [f0, f1, f2]
