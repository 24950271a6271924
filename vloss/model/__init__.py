"""The VLOSS network (paper Sec. 3.1, 3.3): backbone, multi-scale encoder, masked-attention
decoder with a global image query, CLIP text encoder and the open-vocabulary classifier.

Typical use::

    from vloss.config import paper
    from vloss.model import VLOSS, build_model

    cfg = paper()
    model = build_model(cfg.model)                       # or VLOSS(cfg.model)
    cls = model.text.class_embeddings(["cat", "dog"])    # [C, Dt], normalised, cached
    out = model(images, class_embeds=cls)                # pred_logits / pred_masks / ...
"""

from __future__ import annotations

from vloss.config import ModelConfig
from vloss.model.backbone import Backbone
from vloss.model.classifier import LogitScale, OpenVocabClassifier
from vloss.model.decoder import MaskedAttentionDecoder
from vloss.model.encoders import build_encoder
from vloss.model.network import VLOSS
from vloss.model.text_encoder import TextEncoder
from vloss.model.weights import (
    WeightsError,
    load_backbone_weights,
    load_model_weights,
    load_text_weights,
    save_model_weights,
)


def build_model(cfg: ModelConfig) -> VLOSS:
    """Build the network described by ``cfg`` (weights files named in it are loaded)."""
    return VLOSS(cfg)


__all__ = [
    "Backbone", "LogitScale", "MaskedAttentionDecoder", "OpenVocabClassifier", "TextEncoder", "VLOSS",
    "WeightsError", "build_encoder", "build_model", "load_backbone_weights", "load_model_weights",
    "load_text_weights", "save_model_weights",
]
