"""Small building blocks shared by the encoders and the decoder.

* :func:`sine_position_2d` — DETR's normalised 2-D sine positions.
* :class:`MLP` — a plain multi-layer perceptron (mask-embedding head).
* :class:`ConvNormAct` — conv + GroupNorm (+ ReLU), the FPN building block.
* :class:`TransformerEncoderLayer` — post-norm self-attention + FFN with added positions.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


def sine_position_2d(
    batch: int, height: int, width: int, dim: int, device: torch.device, dtype: torch.dtype,
    temperature: float = 10000.0,
) -> torch.Tensor:
    """Normalised 2-D sine/cosine position embedding (DETR, ``normalize=True``).

    Args:
        batch: batch size B.
        height: map height H.
        width: map width W.
        dim: output channels (even); half encode y, half encode x.
        device: output device.
        dtype: output dtype.
        temperature: frequency base.

    Returns:
        ``[B, dim, H, W]`` position embedding.
    """
    if dim % 2:
        raise ValueError(f"sine position dim must be even, got {dim}")
    npf = dim // 2
    eps, scale = 1e-6, 2 * math.pi
    y = torch.arange(1, height + 1, device=device, dtype=torch.float32)
    x = torch.arange(1, width + 1, device=device, dtype=torch.float32)
    y = y / (y[-1] + eps) * scale  # [H]
    x = x / (x[-1] + eps) * scale  # [W]
    dim_t = torch.arange(npf, device=device, dtype=torch.float32)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / npf)  # [npf]
    pos_x = x[:, None] / dim_t  # [W, npf]
    pos_y = y[:, None] / dim_t  # [H, npf]
    pos_x = torch.stack((pos_x[:, 0::2].sin(), pos_x[:, 1::2].cos()), dim=2).flatten(1)  # [W, npf]
    pos_y = torch.stack((pos_y[:, 0::2].sin(), pos_y[:, 1::2].cos()), dim=2).flatten(1)  # [H, npf]
    pos = torch.cat(
        (pos_y[:, None, :].expand(height, width, npf), pos_x[None, :, :].expand(height, width, npf)), dim=2
    )  # [H, W, dim]
    return pos.permute(2, 0, 1).unsqueeze(0).expand(batch, dim, height, width).to(dtype)


class MLP(nn.Module):
    """Multi-layer perceptron with ReLU between layers.

    Args:
        in_dim: input width.
        hidden_dim: hidden width.
        out_dim: output width.
        num_layers: number of linear layers.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


def _groups(channels: int) -> int:
    for g in (32, 16, 8, 4, 2, 1):
        if channels % g == 0:
            return g
    return 1


class ConvNormAct(nn.Sequential):
    """Conv2d (no bias) -> GroupNorm(32 or fewer groups) -> optional ReLU.

    Args:
        in_ch: input channels.
        out_ch: output channels.
        kernel: kernel size (padding keeps the spatial size).
        act: append a ReLU.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, act: bool = True) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False),
            nn.GroupNorm(_groups(out_ch), out_ch),
        ]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)
        nn.init.kaiming_uniform_(self[0].weight, a=1)


class TransformerEncoderLayer(nn.Module):
    """Post-norm transformer encoder layer where positions are added to queries and keys.

    Args:
        dim: token width.
        num_heads: attention heads.
        ffn_dim: feed-forward width.
        dropout: dropout rate.
    """

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pos: Optional[torch.Tensor]) -> torch.Tensor:
        """Args: x ``[B, L, dim]`` tokens; pos ``[B, L, dim]`` positions (or None). Returns ``[B, L, dim]``."""
        q = k = x if pos is None else x + pos
        x = self.norm1(x + self.dropout(self.attn(q, k, x, need_weights=False)[0]))
        x = self.norm2(x + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(x))))))
        return x
