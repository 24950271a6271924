"""The VLOSS network: f_I -> f_E -> f_D with text-space heads, plus the text encoder f_T.

``forward`` returns predictions only; the criterion is built beside the model (vloss.losses).

Output contract of ``VLOSS.forward(images, class_embeds=None)``::

    pred_logits  [B, Q, C+1]      only when class_embeds is given (last column = no-object)
    pred_embeds  [B, Q, Dt]       e_obj, object queries in the text space (not normalised)
    pred_masks   [B, Q, H/4, W/4] mask logits
    img_embed    [B, Dt] | None   e_img from the global query (None without it; not normalised)
    aux_outputs  list of dicts with the same keys, one per earlier prediction
                 (initial queries first; num_layers entries)
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import nn

from vloss.config import ModelConfig
from vloss.model.backbone import Backbone
from vloss.model.classifier import LogitScale, OpenVocabClassifier
from vloss.model.decoder import MaskedAttentionDecoder
from vloss.model.encoders import build_encoder
from vloss.model.text_encoder import TextEncoder


class VLOSS(nn.Module):
    """Vision-language omni-supervised segmentation network.

    Args:
        cfg: model settings. ``cfg.backbone.weights`` / ``cfg.text.weights``, when set, are local
            files loaded at construction (see :mod:`vloss.model.weights`).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = Backbone(cfg.backbone)
        self.encoder = build_encoder(cfg.encoder, self.backbone.channels())
        self.decoder = MaskedAttentionDecoder(cfg.decoder, cfg.encoder.hidden_dim, cfg.encoder.mask_dim,
                                              cfg.text.embed_dim)
        self.text = TextEncoder(cfg.text)
        self.classifier = OpenVocabClassifier(cfg.text.embed_dim, cfg.logit_scale_init, cfg.logit_scale_max)
        # contrastive temperature: call it, model.logit_scale_img_text() -> clamped scale (1/tau)
        self.logit_scale_img_text = LogitScale(cfg.logit_scale_init, cfg.logit_scale_max)
        if cfg.text.weights:
            from vloss.model.hub import resolve_weights
            from vloss.model.weights import load_text_weights

            load_text_weights(self, resolve_weights(cfg.text.weights, "text", cfg.text.allow_download))

    @property
    def size_divisor(self) -> int:
        """Input sides must be multiples of this (32)."""
        return self.backbone.size_divisor

    def forward(self, images: torch.Tensor, class_embeds: Optional[torch.Tensor] = None) -> dict[str, Any]:
        """Predict masks, query embeddings (and logits) for a batch.

        Args:
            images: ``[B, 3, H, W]`` normalised images, H and W divisible by 32.
            class_embeds: ``[C, Dt]`` normalised class embeddings, e.g. from
                ``model.text.class_embeddings(names)``; when given, ``pred_logits`` are added.

        Returns:
            dict as described in the module docstring.
        """
        feats = self.backbone(images)  # 4 x [B, C_i, H/s_i, W/s_i]
        mask_features, multi_scale = self.encoder(feats)  # [B, M, H/4, W/4], [f'0, f'1, f'2]
        preds = self.decoder(multi_scale, mask_features)
        if class_embeds is not None:
            for p in preds:
                p["pred_logits"] = self.classifier(p["pred_embeds"], class_embeds)  # [B, Q, C+1]
        out: dict[str, Any] = dict(preds[-1])
        out["aux_outputs"] = [dict(p) for p in preds[:-1]]
        return out

    def encode_captions(self, captions: Sequence[str]) -> torch.Tensor:
        """Caption embeddings e_text ``[B, Dt]`` (not normalised)."""
        return self.text.encode_text(captions)

    def class_embeddings(self, names: Sequence[str], templates: Optional[Sequence[str]] = None) -> torch.Tensor:
        """Normalised class embeddings ``[C, Dt]`` (see :meth:`TextEncoder.class_embeddings`)."""
        return self.text.class_embeddings(names, templates)

    def component_parameters(self) -> dict[str, int]:
        """Parameter counts per component: backbone, encoder, decoder, text, other, total."""
        counts = {
            "backbone": _count(self.backbone),
            "encoder": _count(self.encoder),
            "decoder": _count(self.decoder),
            "text": _count(self.text),
        }
        total = _count(self)
        counts["other"] = total - sum(counts.values())
        counts["total"] = total
        return counts


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
