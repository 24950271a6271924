"""Open-vocabulary classifier: cosine logits between query embeddings and class embeddings.

c = s * norm(e_obj) . norm([e_cls; e_void])^T with a learned "no-object" embedding e_void
appended as the last class (C+1 way, Sec. 3.5) and a learned CLIP-style logit scale s.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class LogitScale(nn.Module):
    """A learnable temperature stored as log(scale), CLIP-style.

    Args:
        init: initial scale (CLIP: 1 / 0.07).
        max_scale: upper clamp applied when reading the scale (CLIP: 100).
    """

    def __init__(self, init: float, max_scale: float) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(init)))
        self.max_scale = max_scale

    def forward(self) -> torch.Tensor:
        """Return the scale ``exp(log_scale)`` clamped to ``max_scale`` (a 0-dim tensor)."""
        return self.log_scale.exp().clamp(max=self.max_scale)


class OpenVocabClassifier(nn.Module):
    """(C+1)-way classifier against text-derived class embeddings.

    Args:
        embed_dim: the text embedding width Dt.
        logit_scale_init: initial logit scale.
        logit_scale_max: clamp of the logit scale.
    """

    def __init__(self, embed_dim: int, logit_scale_init: float, logit_scale_max: float) -> None:
        super().__init__()
        self.void_embed = nn.Parameter(torch.randn(1, embed_dim) * embed_dim ** -0.5)  # "no-object"
        self.logit_scale = LogitScale(logit_scale_init, logit_scale_max)

    def forward(self, query_embeds: torch.Tensor, class_embeds: torch.Tensor) -> torch.Tensor:
        """Classify.

        Args:
            query_embeds: ``[B, Q, Dt]`` object-query embeddings e_obj.
            class_embeds: ``[C, Dt]`` class embeddings (normalised or not; normalised here).

        Returns:
            ``[B, Q, C+1]`` logits, the last column being "no-object".
        """
        if class_embeds.dim() != 2 or class_embeds.shape[1] != query_embeds.shape[-1]:
            raise ValueError(f"class_embeds must be [C, {query_embeds.shape[-1]}], got {tuple(class_embeds.shape)}")
        classes = torch.cat([class_embeds.to(query_embeds.dtype), self.void_embed.to(query_embeds.dtype)], 0)
        classes = F.normalize(classes, dim=-1)  # [C+1, Dt]
        queries = F.normalize(query_embeds, dim=-1)  # [B, Q, Dt]
        return self.logit_scale().to(queries.dtype) * queries @ classes.t()
