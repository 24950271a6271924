"""Image feature extractor f_I: a timm model used as a multi-scale feature pyramid.

Swin comes out of timm channels-last (NHWC); :class:`Backbone` permutes to NCHW in exactly
one place (:meth:`Backbone.forward`). Swin is built with ``strict_img_size=False`` and
``always_partition=True``: any input whose sides are divisible by 32 works, and every stage
keeps the 7x7 windows and shifted windows it was pre-trained with (padding partial windows),
as Mask2Former's Swin does.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path
from typing import Any, Optional

import timm
import torch
from torch import nn

from vloss.config import BackboneConfig


def _is_swin(name: str) -> bool:
    return name.startswith("swin")


def timm_kwargs(cfg: BackboneConfig) -> dict[str, Any]:
    """Keyword arguments for ``timm.create_model`` that build the backbone described by ``cfg``."""
    kwargs: dict[str, Any] = dict(
        features_only=True, out_indices=tuple(cfg.out_indices), drop_path_rate=cfg.drop_path_rate
    )
    if _is_swin(cfg.name):
        # strict_img_size=False, not dynamic_img_size=True: timm < 1.0.31 has no dynamic_img_size for
        # Swin and swallows it, leaving the 224x224 size check in (seen on the GPU image's timm 1.0.29)
        kwargs.update(strict_img_size=False, always_partition=True)
        if cfg.embed_dim is not None:
            kwargs["embed_dim"] = cfg.embed_dim
        if cfg.depths is not None:
            kwargs["depths"] = tuple(cfg.depths)
        if cfg.num_heads is not None:
            kwargs["num_heads"] = tuple(cfg.num_heads)
    elif cfg.embed_dim is not None or cfg.depths is not None or cfg.num_heads is not None:
        raise ValueError(f"backbone {cfg.name!r}: embed_dim/depths/num_heads overrides apply to Swin only")
    return kwargs


def create_timm_features(cfg: BackboneConfig, weights: Optional[str | Path] = None) -> nn.Module:
    """Build the timm feature extractor, optionally with ImageNet weights from a local file.

    Args:
        cfg: backbone settings.
        weights: path of a timm checkpoint (the classification model's state dict, as timm
            publishes it), or a timm name in the Hugging Face cache (:mod:`vloss.model.hub`); timm
            remaps it to the feature extractor and loads it with ``weights_only=True`` (or from
            safetensors). Nothing is downloaded unless ``cfg.allow_download``.
    """
    kwargs = timm_kwargs(cfg)
    if weights is None:
        return timm.create_model(cfg.name, pretrained=False, **kwargs)
    from vloss.model.hub import resolve_weights

    path = Path(resolve_weights(str(weights), "backbone", cfg.allow_download))  # a timm name: its cached file
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights file not found: {path}")
    try:
        return timm.create_model(
            cfg.name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **kwargs
        )
    except RuntimeError as exc:  # size mismatches from load_state_dict
        raise ValueError(f"backbone weights {path} do not fit {cfg.name!r}: {exc}") from exc
    except (EOFError, LookupError, UnicodeDecodeError, pickle.UnpicklingError, struct.error) as exc:  # not a ckpt
        raise ValueError(f"backbone weights {path}: not a weights file torch.load can read safely "
                         f"({type(exc).__name__}: {exc})") from exc


class Backbone(nn.Module):
    """timm multi-scale feature extractor returning NCHW maps, highest resolution first.

    Args:
        cfg: backbone settings (timm name, optional Swin size overrides, optional weights file).
    """

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.body = create_timm_features(cfg, cfg.weights)
        if cfg.grad_checkpointing:
            if not hasattr(self.body, "set_grad_checkpointing"):
                raise ValueError(f"backbone {cfg.name!r}: timm offers no gradient checkpointing for it; "
                                 f"set model.backbone.grad_checkpointing=false")
            self.body.set_grad_checkpointing(True)
        self.feature_info = self.body.feature_info
        fmt = getattr(self.body, "output_fmt", "NCHW")
        self.channels_last = str(getattr(fmt, "value", fmt)) == "NHWC"
        reductions = self.feature_info.reduction()
        if list(reductions) != [4, 8, 16, 32]:
            raise ValueError(f"backbone {cfg.name!r} with out_indices={cfg.out_indices}: expected 4 feature "
                             f"stages at strides [4, 8, 16, 32], got {list(reductions)}")
        self.size_divisor = max(reductions)

    def channels(self) -> list[int]:
        """Channels per returned stage, highest resolution first (Swin-T: 96, 192, 384, 768)."""
        return list(self.feature_info.channels())

    def reduction(self) -> list[int]:
        """Stride per returned stage (4, 8, 16, 32)."""
        return list(self.feature_info.reduction())

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Extract features.

        Args:
            images: ``[B, 3, H, W]`` normalised images, H and W divisible by 32.

        Returns:
            four maps ``[B, C_i, H / s_i, W / s_i]`` for strides s = 4, 8, 16, 32.
        """
        h, w = images.shape[-2:]
        if h % self.size_divisor or w % self.size_divisor:
            raise ValueError(f"input size {h}x{w} must be divisible by {self.size_divisor}")
        feats = self.body(images)
        if self.channels_last:
            feats = [f.permute(0, 3, 1, 2).contiguous() for f in feats]  # NHWC -> [B, C, H, W]
        return feats
