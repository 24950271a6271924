"""The two towers pretrained CLIP-style, and the files they are written to.

:class:`ClipTowers` pairs the preset's image tower, built as timm's *classification* model (the
global-pooled head projects to the joint embedding, as CLIP's visual projection does), with the
preset's text tower built at CLIP's context length of 77. What it writes is what a user of the
paper passes:

* ``backbone.bin`` — a timm classification checkpoint (``patch_embed.*``, ``layers.*``,
  ``norm.*``, ``head.fc.*``); timm's own filter drops the head when VLOSS builds the feature
  extractor from it (``model.backbone.weights``).
* ``text.bin`` — an open_clip CLIP state dict without ``visual.*`` (``token_embedding.weight``,
  77-row ``positional_embedding``, ``transformer.resblocks.*``, ``ln_final.*``,
  ``text_projection``, ``logit_scale``); VLOSS cuts the positions to its 48 tokens
  (``model.text.weights``).

Both go through the same name and shape checks as real weights (:mod:`vloss.model.weights`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Sequence

import timm
import torch
from torch import nn

from vloss.config import BackboneConfig, TextConfig
from vloss.model.backbone import timm_kwargs
from vloss.model.text_encoder import TextEncoder

CLIP_CONTEXT = 77
BACKBONE_FILE = "backbone.bin"
TEXT_FILE = "text.bin"
TOWERS_JSON = "towers.json"


def classifier_kwargs(cfg: BackboneConfig, num_classes: int) -> dict[str, Any]:
    """``timm.create_model`` keyword arguments of the classification model whose features VLOSS uses.

    Args:
        cfg: the preset's backbone settings (Swin size overrides included).
        num_classes: width of the head (here the joint embedding width).
    """
    kwargs = timm_kwargs(cfg)
    for key in ("features_only", "out_indices"):
        kwargs.pop(key, None)
    return {**kwargs, "num_classes": num_classes}


class ClipTowers(nn.Module):
    """Image and text towers of a preset, trained contrastively.

    Args:
        backbone: the preset's backbone settings (its ``weights`` is ignored).
        text: the preset's text settings (built at ``CLIP_CONTEXT`` tokens; ``weights`` ignored).
        logit_scale_init: initial ``1 / tau`` (CLIP: 1/0.07).
    """

    def __init__(self, backbone: BackboneConfig, text: TextConfig, logit_scale_init: float = 1 / 0.07) -> None:
        super().__init__()
        self.backbone_cfg = dataclasses.replace(backbone, weights=None)
        self.text_cfg = dataclasses.replace(text, weights=None, trainable=True, context_length=CLIP_CONTEXT)
        self.image = timm.create_model(backbone.name, pretrained=False,
                                       **classifier_kwargs(self.backbone_cfg, text.embed_dim))
        self.text = TextEncoder(self.text_cfg)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(logit_scale_init)))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Global image embeddings.

        Args:
            images: ``[B, 3, S, S]`` normalised images, S divisible by 32.

        Returns:
            ``[B, D]`` projected embeddings (not normalised).
        """
        return self.image(images)

    def encode_text(self, captions: Sequence[str]) -> torch.Tensor:
        """Caption embeddings ``[B, D]`` (EOT pooling, projected, not normalised)."""
        return self.text.encode_text(list(captions))

    def forward(self, images: torch.Tensor, captions: Sequence[str],
                prompts: Sequence[str] = ()) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Embeddings and the temperature in one pass (one pass, so DDP sees every parameter once).

        Args:
            images: ``[B, 3, S, S]``.
            captions: B captions.
            prompts: C class prompts of the label objective (may be empty).

        Returns:
            ``([B, D] images, [B, D] captions, [C, D] prompts, scale)``, scale = exp(logit_scale) <= 100.
        """
        texts = self.encode_text(list(captions) + list(prompts))
        n = len(captions)
        return self.encode_image(images), texts[:n], texts[n:], self.logit_scale.exp().clamp(max=100.0)


def backbone_state_dict(towers: ClipTowers) -> dict[str, torch.Tensor]:
    """The image tower as a timm classification checkpoint (CPU tensors)."""
    return {k: v.detach().cpu().clone() for k, v in towers.image.state_dict().items()}


def text_state_dict(towers: ClipTowers) -> dict[str, torch.Tensor]:
    """The text tower as an open_clip CLIP state dict without ``visual.*`` (CPU tensors)."""
    sd = {k: v.detach().cpu().clone() for k, v in towers.text.tower.state_dict().items()}
    sd["logit_scale"] = towers.logit_scale.detach().cpu().clone()
    return sd


def write_towers(towers: ClipTowers, out: str | Path, info: dict[str, Any] | None = None) -> dict[str, str]:
    """Write ``backbone.bin``, ``text.bin`` and ``towers.json`` (what they are and how to pass them).

    Each file is written beside its final name and renamed into place, so a reader never sees
    a half-written file.

    Args:
        towers: the trained towers.
        out: folder.
        info: extra facts recorded in ``towers.json`` (steps, corpus, final loss).

    Returns:
        ``{"backbone": path, "text": path}``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"backbone": out / BACKBONE_FILE, "text": out / TEXT_FILE}
    for key, sd in (("backbone", backbone_state_dict(towers)), ("text", text_state_dict(towers))):
        tmp = paths[key].with_name(paths[key].name + ".tmp")
        torch.save(sd, tmp)
        tmp.replace(paths[key])
    meta = {"backbone": {"file": BACKBONE_FILE, "format": "timm classification checkpoint",
                         "timm_name": towers.backbone_cfg.name, "config": dataclasses.asdict(towers.backbone_cfg)},
            "text": {"file": TEXT_FILE, "format": "open_clip CLIP state dict (text tower, 77 positions)",
                     "config": {k: v for k, v in dataclasses.asdict(towers.text_cfg).items()
                                if k in ("width", "layers", "heads", "embed_dim", "vocab_size", "quick_gelu")}},
            "use": [f"--set model.backbone.weights={paths['backbone']}", f"--set model.text.weights={paths['text']}"],
            **(info or {})}
    tmp = out / (TOWERS_JSON + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    tmp.replace(out / TOWERS_JSON)
    return {k: str(v) for k, v in paths.items()}
