"""VLOSS's FPN-style encoder (``encoder.kind = "fpn_style"``, paper Sec. 3.3).

A vanilla transformer encoder with 2-D sine positions gives every location of the smallest
map f0 global, long-range context; FPN lateral + top-down convolutions then build the larger
maps. By default the transformer runs at the backbone's own width (768 for Swin-T).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from vloss.model.encoders.fpn import TopDownFPN
from vloss.model.layers import ConvNormAct, TransformerEncoderLayer, sine_position_2d


class FPNStyleEncoder(nn.Module):
    """Transformer over f0 + FPN for f1..f3.

    Args:
        in_channels: backbone channels, highest resolution first.
        hidden_dim: width of f'0..f'2.
        mask_dim: width of the mask features f'3.
        num_layers: transformer encoder layers on f0.
        num_heads: attention heads.
        ffn_dim: feed-forward width.
        transformer_dim: transformer width; ``None`` = backbone width of f0 (no projection).
        dropout: dropout rate in the transformer.
    """

    def __init__(
        self, in_channels: list[int], hidden_dim: int, mask_dim: int, num_layers: int, num_heads: int,
        ffn_dim: int, transformer_dim: Optional[int] = None, dropout: float = 0.0,
    ) -> None:
        super().__init__()
        c0 = in_channels[3]
        width = transformer_dim or c0
        self.in_proj = nn.Identity() if width == c0 else nn.Conv2d(c0, width, 1)
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(width, num_heads, ffn_dim, dropout) for _ in range(num_layers)
        )
        self.top = ConvNormAct(width, hidden_dim, 3)
        self.fpn = TopDownFPN([in_channels[2], in_channels[1], in_channels[0]], hidden_dim)
        self.mask_proj = nn.Conv2d(hidden_dim, mask_dim, 1)
        for layer in self.layers:
            for p in layer.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Refine the backbone maps.

        Args:
            feats: ``[s4, s8, s16, s32]`` backbone maps.

        Returns:
            ``(mask_features [B, M, H/4, W/4], [f'0, f'1, f'2])``.
        """
        x = self.in_proj(feats[3])  # [B, E, h, w]
        b, e, h, w = x.shape
        pos = sine_position_2d(b, h, w, e, x.device, x.dtype).flatten(2).transpose(1, 2)  # [B, hw, E]
        tokens = x.flatten(2).transpose(1, 2)  # [B, hw, E]
        for layer in self.layers:
            tokens = layer(tokens, pos)
        x = tokens.transpose(1, 2).reshape(b, e, h, w)  # [B, E, h, w]
        f0 = self.top(x)  # [B, D, h, w]
        f1, f2, f3 = self.fpn(f0, [feats[2], feats[1], feats[0]])
        return self.mask_proj(f3), [f0, f1, f2]
