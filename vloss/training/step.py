"""One training step's forward and losses, per task (paper Sec. 3.2, 3.5; Eq. 3-6).

:class:`TaskForward` runs the whole forward of one task inside one module call, so that DDP
sees every parameter the step uses; :func:`compute_losses` turns its outputs into the loss
terms of the task. The Ray trainer, the tests and the overfit diagnostic all use these two, so
there is exactly one definition of what a training step computes:

* ``panoptic``  -> L_cls over all queries + L_bce + L_dice (COCO panoptic vocabulary);
* ``detection`` -> positive-only L_cls (when ``loss.positive_only_detection``) + L_bce + L_dice;
* ``captions``  -> L_con (CLIP, or FILIP over image tokens and text tokens).

The total is Eq. 6 (:func:`vloss.losses.weighted_total`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vloss.config import LossConfig
from vloss.losses import ContrastiveLoss, SetCriterion
from vloss.model import VLOSS
from vloss.training.tasks import training_task


class TaskForward(nn.Module):
    """The forward of one task as one module call (what DDP wraps).

    Class embeddings of the task's vocabulary (text encoder, trained at its own lr) and the
    caption embeddings are computed inside ``forward``; gradients of every part then flow
    through DDP's reducer.

    Args:
        model: the network.
        vocabularies: class names per dense task (``{"panoptic": [...], "detection": [...]}``).
        templates: prompt templates for the class names (an ensemble when several).
        contrastive: ``"clip"`` or ``"filip"`` (what the caption task returns).
    """

    def __init__(self, model: VLOSS, vocabularies: dict[str, list[str]], templates: tuple[str, ...],
                 contrastive: str) -> None:
        super().__init__()
        self.model = model
        self.vocabularies = vocabularies
        self.templates = tuple(templates)
        self.contrastive = contrastive

    def forward(self, task: str, images: torch.Tensor, captions: list[str] | None = None) -> dict[str, Any]:
        """Run ``task`` on a batch.

        Args:
            task: one of :data:`vloss.training.tasks.TASKS`.
            images: ``[B, 3, H, W]`` normalised images.
            captions: ``B`` strings (captions task only).

        Returns:
            dense tasks: the network's output dict (``pred_logits [B, Q, C+1]``,
            ``pred_masks [B, Q, H/4, W/4]``, ``aux_outputs``, ...); captions:
            ``{"img": [B, Dt] (or [B, 1+Q, Dt] for FILIP), "text": [B, Dt] (or tokens),
            "scale": logit scale[, "text_mask"]}``.
        """
        if not training_task(task).dense:
            out = self.model(images)
            if self.contrastive == "filip":
                # image tokens: the global image embedding and the object queries  [B, 1+Q, Dt]
                img_tokens = torch.cat([out["img_embed"][:, None], out["pred_embeds"]], dim=1)
                txt_tokens, txt_mask = self.model.text.encode_text_tokens(captions)
                return {"img": img_tokens, "text": txt_tokens, "text_mask": txt_mask,
                        "scale": self.model.logit_scale_img_text()}
            # the temperature is read here too: a parameter used outside forward breaks DDP
            return {"img": out["img_embed"], "text": self.model.encode_captions(captions),
                    "scale": self.model.logit_scale_img_text()}
        class_embeds = self.model.class_embeddings(self.vocabularies[task], self.templates)  # [C, Dt]
        return self.model(images, class_embeds)


def _float_outputs(out: dict[str, Any]) -> dict[str, Any]:
    """Dense outputs in fp32 (losses after bf16/fp16 autocast are computed in full precision)."""
    out = {k: (v.float() if torch.is_tensor(v) else v) for k, v in out.items()}
    out["aux_outputs"] = [{k: v.float() for k, v in a.items() if torch.is_tensor(v)}
                          for a in out.get("aux_outputs", [])]
    return out


def compute_losses(task: str, outputs: dict[str, Any], batch: dict[str, Any], loss_cfg: LossConfig,
                   criterion: SetCriterion, contrastive: ContrastiveLoss | None = None,
                   generator: torch.Generator | list[torch.Generator] | None = None,
                   normalizers: tuple[float, float] | None = None) -> dict[str, torch.Tensor]:
    """The unweighted loss terms of one task's step.

    Args:
        task: one of :data:`vloss.training.tasks.TASKS`.
        outputs: what :class:`TaskForward` returned for the batch.
        batch: ``{"targets": [{"labels": [M], "masks": [M, H, W]}, ...]}`` for dense tasks.
        loss_cfg: the loss settings (positive-only detection, contrastive kind).
        criterion: the set criterion (Hungarian matching, cls / BCE / dice, deep supervision).
        contrastive: the image-text contrastive loss (captions task only).
        generator: random generator for the criterion's point sampling, or one per image (None: its own).
        normalizers: ``(num_masks, cls_norm)`` of the whole step's batch when this batch is one of
            its micro-batches (:meth:`SetCriterion.normalizers`; None: this batch's own).

    Returns:
        ``{"loss_cls", "loss_bce", "loss_dice", ...}`` (dense) or ``{"loss_con"}`` (captions);
        combine with :func:`vloss.losses.weighted_total` (Eq. 6).
    """
    kind = training_task(task)
    if not kind.dense:
        if contrastive is None:
            raise ValueError("the captions task needs the contrastive loss")
        scale = outputs["scale"].float()
        if loss_cfg.contrastive == "filip":
            return contrastive(outputs["img"].float(), outputs["text"].float(), scale, None, outputs["text_mask"])
        return contrastive(outputs["img"].float(), outputs["text"].float(), scale)
    positive_only = kind.partial_labels and loss_cfg.positive_only_detection
    kwargs: dict[str, Any] = {"generator": generator} if generator is not None else {}
    if normalizers is not None:
        kwargs["num_masks"], kwargs["cls_norm"] = normalizers
    return criterion(_float_outputs(outputs), batch["targets"], positive_only=positive_only, **kwargs)


def autocast_context(amp: str, device: torch.device) -> tuple[Any, bool]:
    """The autocast context of a precision mode, and whether it needs a gradient scaler.

    Args:
        amp: ``"auto"`` (bf16 on GPU, off on CPU), ``"bf16"``, ``"fp16"`` (GPU only) or ``"off"``.
        device: where the step runs.

    Raises:
        ValueError: fp16 without a GPU, or an unknown mode.
    """
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" else "off"
    if amp == "off":
        return torch.autocast(device.type, enabled=False), False
    if amp == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16), False
    if amp == "fp16":
        if device.type != "cuda":
            raise ValueError("train.amp=fp16 needs a GPU; use bf16 or off on CPU")
        return torch.autocast(device.type, dtype=torch.float16), True
    raise ValueError(f"train.amp must be auto, bf16, fp16 or off, got {amp!r}")
