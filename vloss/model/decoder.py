"""Masked-attention transformer decoder f_D (Mask2Former) with the global image query (Eq. 2).

N learnable object queries plus one global image query, initialised as the average pool of
f'0, are refined jointly by ``num_layers`` layers of (masked cross-attention -> self-attention
-> FFN), visiting f'0, f'1, f'2 round-robin. Object queries attend only where the previous
layer's mask is >= ``mask_threshold`` (rows with nothing left attend everywhere); the global
query always attends to the whole map. After the initial queries and after every layer the
heads give, per query, an embedding in the text space (e_obj), a mask over f'3, and for the
global query the image embedding e_img: deep supervision over ``num_layers + 1`` outputs.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from vloss.config import DecoderConfig
from vloss.model.layers import MLP, sine_position_2d


class CrossAttentionLayer(nn.Module):
    """Post-norm (masked) cross-attention from queries to one feature level.

    Args:
        dim: width.
        num_heads: heads.
        dropout: dropout rate.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, mask: Optional[torch.Tensor],
                query_pos: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Args: tgt/query_pos ``[B, Q, D]``; memory/pos ``[B, HW, D]``; mask ``[B*heads, Q, HW]`` (True = blocked)."""
        out = self.attn(tgt + query_pos, memory + pos, memory, attn_mask=mask, need_weights=False)[0]
        return self.norm(tgt + self.dropout(out))


class SelfAttentionLayer(nn.Module):
    """Post-norm self-attention among the queries.

    Args:
        dim: width.
        num_heads: heads.
        dropout: dropout rate.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tgt: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        """Args: tgt/query_pos ``[B, Q, D]``. Returns ``[B, Q, D]``."""
        q = tgt + query_pos
        return self.norm(tgt + self.dropout(self.attn(q, q, tgt, need_weights=False)[0]))


class FFNLayer(nn.Module):
    """Post-norm feed-forward block.

    Args:
        dim: width.
        ffn_dim: hidden width.
        dropout: dropout rate.
    """

    def __init__(self, dim: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tgt: torch.Tensor) -> torch.Tensor:
        return self.norm(tgt + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(tgt))))))


class MaskedAttentionDecoder(nn.Module):
    """Mask2Former decoder with object queries, optional global image query and text-space heads.

    Args:
        cfg: decoder settings.
        in_dim: width of the encoder maps f'0..f'2.
        mask_dim: width of the mask features f'3.
        text_dim: width Dt of the text embedding space (e_obj and e_img live there).
    """

    num_levels = 3

    def __init__(self, cfg: DecoderConfig, in_dim: int, mask_dim: int, text_dim: int) -> None:
        super().__init__()
        d = cfg.hidden_dim
        self.cfg = cfg
        self.num_heads = cfg.num_heads
        self.num_queries = cfg.num_queries
        self.use_global = cfg.global_query
        self.input_proj = nn.ModuleList(
            nn.Identity() if in_dim == d else nn.Conv2d(in_dim, d, 1) for _ in range(self.num_levels)
        )
        self.level_embed = nn.Embedding(self.num_levels, d)
        self.query_feat = nn.Embedding(cfg.num_queries, d)  # learnable initial object queries
        self.query_pos = nn.Embedding(cfg.num_queries, d)  # their positional embeddings
        if self.use_global:
            self.global_proj = nn.Identity() if in_dim == d else nn.Linear(in_dim, d)
            self.global_pos = nn.Embedding(1, d)
            self.img_proj = nn.Linear(d, text_dim)
        self.cross = nn.ModuleList(CrossAttentionLayer(d, cfg.num_heads, cfg.dropout) for _ in range(cfg.num_layers))
        self.self_attn = nn.ModuleList(SelfAttentionLayer(d, cfg.num_heads, cfg.dropout)
                                       for _ in range(cfg.num_layers))
        self.ffn = nn.ModuleList(FFNLayer(d, cfg.ffn_dim, cfg.dropout) for _ in range(cfg.num_layers))
        self.norm = nn.LayerNorm(d)
        self.obj_proj = nn.Linear(d, text_dim)  # e_obj in the text space
        self.mask_embed = MLP(d, d, mask_dim, 3)
        for mod in (self.cross, self.self_attn, self.ffn):
            for p in mod.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)

    def heads(self, queries: torch.Tensor, mask_features: torch.Tensor,
              attn_size: tuple[int, int]) -> tuple[dict[str, Optional[torch.Tensor]], torch.Tensor]:
        """Predictions of one layer and the attention mask for the next.

        Args:
            queries: ``[B, Q', D]`` (Q' = N, or N + 1 with the global query last).
            mask_features: ``[B, M, H/4, W/4]``.
            attn_size: ``(h, w)`` of the level the next layer attends to.

        Returns:
            ``({"pred_embeds" [B, N, Dt], "pred_masks" [B, N, H/4, W/4], "img_embed" [B, Dt] | None},
            attn_mask [B*heads, Q', h*w] bool, True = blocked)``.
        """
        x = self.norm(queries)  # [B, Q', D]
        obj = x[:, : self.num_queries]  # [B, N, D]
        pred_embeds = self.obj_proj(obj)  # [B, N, Dt]
        pred_masks = torch.einsum("bqc,bchw->bqhw", self.mask_embed(obj), mask_features)  # [B, N, H/4, W/4]
        img_embed = self.img_proj(x[:, self.num_queries]) if self.use_global else None  # [B, Dt]
        with torch.no_grad():
            small = F.interpolate(pred_masks.detach().float(), size=attn_size, mode="bilinear", align_corners=False)
            blocked = small.sigmoid().flatten(2) < self.cfg.mask_threshold  # [B, N, h*w]
            if self.use_global:  # the global query attends everywhere
                blocked = torch.cat([blocked, blocked.new_zeros(blocked.shape[0], 1, blocked.shape[2])], 1)
            blocked = blocked.repeat_interleave(self.num_heads, dim=0)  # [B*heads, Q', h*w]
        return {"pred_embeds": pred_embeds, "pred_masks": pred_masks, "img_embed": img_embed}, blocked

    def layer(self, i: int, queries: torch.Tensor, src: torch.Tensor, blocked: torch.Tensor,
              query_pos: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Decoder layer ``i``: masked cross-attention to one level, self-attention, FFN.

        Args:
            queries: ``[B, Q, D]``; src, pos: ``[B, h*w, D]``; blocked: ``[B*heads, Q, h*w]`` bool;
            query_pos: ``[B, Q, D]``.
        Returns:
            the updated queries ``[B, Q, D]``.
        """
        queries = self.cross[i](queries, src, blocked, query_pos, pos)
        queries = self.self_attn[i](queries, query_pos)
        return self.ffn[i](queries)

    def forward(self, feats: list[torch.Tensor],
                mask_features: torch.Tensor) -> list[dict[str, Optional[torch.Tensor]]]:
        """Decode.

        Args:
            feats: ``[f'0, f'1, f'2]``, each ``[B, C, h_l, w_l]`` (strides 32, 16, 8).
            mask_features: ``[B, M, H/4, W/4]`` (f'3).

        Returns:
            ``num_layers + 1`` prediction dicts (initial queries first, final layer last), see :meth:`heads`.
        """
        b = mask_features.shape[0]
        srcs, poss, sizes = [], [], []
        for lvl in range(self.num_levels):
            x = self.input_proj[lvl](feats[lvl])  # [B, D, h, w]
            _, d, h, w = x.shape
            sizes.append((h, w))
            poss.append(sine_position_2d(b, h, w, d, x.device, x.dtype).flatten(2).transpose(1, 2))  # [B, hw, D]
            srcs.append(x.flatten(2).transpose(1, 2) + self.level_embed.weight[lvl].to(x.dtype)[None, None])
        queries = self.query_feat.weight[None].expand(b, -1, -1)  # [B, N, D]
        query_pos = self.query_pos.weight[None].expand(b, -1, -1)  # [B, N, D]
        if self.use_global:
            pooled = self.global_proj(feats[0].mean(dim=(2, 3)))  # phi(f'0): [B, D]
            queries = torch.cat([queries, pooled[:, None].to(queries.dtype)], 1)  # [B, N+1, D]
            query_pos = torch.cat([query_pos, self.global_pos.weight[None].expand(b, -1, -1)], 1)
        outputs = []
        pred, blocked = self.heads(queries, mask_features, sizes[0])
        outputs.append(pred)
        for i in range(len(self.cross)):
            lvl = i % self.num_levels
            # a query whose mask covers nothing would attend to nothing (NaN): let it see everything
            blocked = blocked & ~blocked.all(-1, keepdim=True)
            if self.cfg.grad_checkpointing and self.training and torch.is_grad_enabled():
                queries = checkpoint(self.layer, i, queries, srcs[lvl], blocked, query_pos, poss[lvl],
                                     use_reentrant=False)
            else:
                queries = self.layer(i, queries, srcs[lvl], blocked, query_pos, poss[lvl])
            pred, blocked = self.heads(queries, mask_features, sizes[(i + 1) % self.num_levels])
            outputs.append(pred)
        return outputs
