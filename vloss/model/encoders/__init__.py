"""Multi-scale encoders f_E (paper Table 5): one file per kind, chosen by :func:`build_encoder`."""

from __future__ import annotations

from torch import nn

from vloss.config import EncoderConfig
from vloss.model.encoders.deform import DeformEncoder
from vloss.model.encoders.fpn import FPNEncoder
from vloss.model.encoders.fpn_style import FPNStyleEncoder


def build_encoder(cfg: EncoderConfig, in_channels: list[int]) -> nn.Module:
    """Build the encoder ``cfg.kind`` for backbone channels ``in_channels`` (highest resolution first).

    Args:
        cfg: encoder settings.
        in_channels: the four backbone channel counts, stride 4 first.
    """
    if cfg.kind == "fpn_style":
        return FPNStyleEncoder(in_channels, cfg.hidden_dim, cfg.mask_dim, cfg.num_layers, cfg.num_heads,
                               cfg.ffn_dim, cfg.transformer_dim, cfg.dropout)
    if cfg.kind == "fpn":
        return FPNEncoder(in_channels, cfg.hidden_dim, cfg.mask_dim)
    if cfg.kind == "deform":
        return DeformEncoder(in_channels, cfg.hidden_dim, cfg.mask_dim, cfg.num_layers, cfg.num_heads,
                             cfg.ffn_dim, cfg.num_points, cfg.dropout)
    raise ValueError(f"unknown encoder kind {cfg.kind!r}")


__all__ = ["build_encoder", "DeformEncoder", "FPNEncoder", "FPNStyleEncoder"]
