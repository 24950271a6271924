"""Image-text contrastive losses (paper Eq. 4-5, Table 6 ablation).

* :func:`clip_contrastive_loss` -- CLIP's symmetric InfoNCE on global embeddings:
  ``s_ij = <e_img_i, e_text_j> / tau`` with cosine similarity, cross-entropy along rows
  (image -> text) and along columns (text -> image), averaged (Eq. 5).
* :func:`filip_contrastive_loss` -- FILIP's token-wise late interaction: the similarity of an
  image and a caption is the average over one side's valid tokens of the max cosine similarity
  to the other side's valid tokens, in each direction.

Both optionally gather the embeddings of every rank (``torch.distributed``) so that each rank
computes the loss over the global batch (more negatives; every rank gets the same value).
With ``gather_with_grad=True`` the gather is differentiable: its backward sums the incoming
gradients over ranks and returns this rank's slice (so after DDP's gradient averaging the
parameters receive exactly the gradient of the global loss). With ``gather_with_grad=False``
the other ranks' embeddings are constants and only the local shard carries gradient
(the parameters then receive the global gradient divided by the world size).

``logit_scale`` is the multiplier ``1 / tau`` itself (e.g. ``model.logit_scale.exp()``), a float
or a scalar tensor (gradients flow into a learnable one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from vloss.config import LossConfig


class _AllGather(torch.autograd.Function):
    """Differentiable all_gather along dim 0 (equal shapes on every rank)."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        world = dist.get_world_size()
        ctx.rank = dist.get_rank()
        ctx.rows = tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, dim=0)  # [world * N, ...]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # sum of d(loss_r)/d(gathered) over ranks r
        start = ctx.rank * ctx.rows
        return grad[start:start + ctx.rows]


def gather_batch(tensor: torch.Tensor, gather_with_grad: bool = True) -> torch.Tensor:
    """Concatenate ``tensor`` from every rank along dim 0 (rank order); identity without a group.

    Args:
        tensor: ``[N, ...]``, the same shape on every rank.
        gather_with_grad: differentiable gather (see module docstring); otherwise the gathered
            copy is constant except for this rank's own rows, which stay the input tensor.

    Returns:
        ``[world * N, ...]``.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    if gather_with_grad:
        return _AllGather.apply(tensor)
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    with torch.no_grad():
        dist.all_gather(parts, tensor.contiguous())
    parts[dist.get_rank()] = tensor  # the local shard keeps its graph
    return torch.cat(parts, dim=0)


def clip_contrastive_loss(img_embed: torch.Tensor, text_embed: torch.Tensor,
                          logit_scale: float | torch.Tensor, *, gather: bool = False,
                          gather_with_grad: bool = True) -> torch.Tensor:
    """CLIP symmetric InfoNCE (Eq. 5).

    Args:
        img_embed: global image embeddings ``e_img`` ``[B, D]`` (normalised here).
        text_embed: caption embeddings ``e_text`` ``[B, D]``, row ``i`` pairs with image ``i``.
        logit_scale: ``1 / tau``.
        gather: gather both sides over ranks and compute the loss on the global batch.
        gather_with_grad: see :func:`gather_batch`.

    Returns:
        Scalar loss.
    """
    if img_embed.shape != text_embed.shape or img_embed.dim() != 2:
        raise ValueError(f"img_embed {tuple(img_embed.shape)} and text_embed {tuple(text_embed.shape)} "
                         "must both be [B, D]")
    img = F.normalize(img_embed.float(), dim=-1)  # [B, D]
    txt = F.normalize(text_embed.float(), dim=-1)  # [B, D]
    if gather:
        img = gather_batch(img, gather_with_grad)  # [W*B, D]
        txt = gather_batch(txt, gather_with_grad)  # [W*B, D]
    logits = logit_scale * (img @ txt.T)  # [N, N], rows = images, columns = texts
    labels = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def filip_similarity(img_tokens: torch.Tensor, img_mask: torch.Tensor | None,
                     text_tokens: torch.Tensor, text_mask: torch.Tensor | None,
                     chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-wise (late interaction) similarities of every image with every caption.

    Args:
        img_tokens: ``[Bi, Ni, D]`` image tokens.
        img_mask: ``[Bi, Ni]`` bool, True for valid tokens (None = all valid).
        text_tokens: ``[Bt, Lt, D]`` text tokens.
        text_mask: ``[Bt, Lt]`` bool, True for valid tokens (None = all valid).
        chunk: images processed at once (bounds the ``[chunk, Bt, Ni, Lt]`` buffer).

    Returns:
        ``(sim_i2t, sim_t2i)``, both ``[Bi, Bt]``: ``sim_i2t[i, j]`` = mean over valid image
        tokens of their max cosine similarity to caption ``j``'s valid tokens; ``sim_t2i[i, j]``
        = mean over caption ``j``'s valid tokens of their max similarity to image ``i``'s tokens.
    """
    x = F.normalize(img_tokens.float(), dim=-1)  # [Bi, Ni, D]
    y = F.normalize(text_tokens.float(), dim=-1)  # [Bt, Lt, D]
    bi, ni, _ = x.shape
    bt, lt, _ = y.shape
    im = torch.ones(bi, ni, dtype=torch.bool, device=x.device) if img_mask is None else img_mask.bool()
    tm = torch.ones(bt, lt, dtype=torch.bool, device=y.device) if text_mask is None else text_mask.bool()
    if not im.any(1).all() or not tm.any(1).all():
        raise ValueError("filip_similarity: every image and caption needs at least one valid token")
    neg = torch.finfo(x.dtype).min
    i2t, t2i = [], []
    for s in range(0, bi, chunk):
        xs, ims = x[s:s + chunk], im[s:s + chunk]  # [c, Ni, D], [c, Ni]
        sim = torch.einsum("and,bld->abnl", xs, y)  # [c, Bt, Ni, Lt]
        pair_valid = ims[:, None, :, None] & tm[None, :, None, :]  # [c, Bt, Ni, Lt]
        sim = sim.masked_fill(~pair_valid, neg)
        best_t = sim.max(dim=3).values  # [c, Bt, Ni]: each image token's best text token
        best_i = sim.max(dim=2).values  # [c, Bt, Lt]: each text token's best image token
        w_img = ims[:, None, :].to(x.dtype)  # [c, 1, Ni]
        w_txt = tm[None, :, :].to(x.dtype)  # [1, Bt, Lt]
        i2t.append((best_t * w_img).sum(-1) / w_img.sum(-1))  # [c, Bt]
        t2i.append((best_i * w_txt).sum(-1) / w_txt.sum(-1))  # [c, Bt]
    return torch.cat(i2t), torch.cat(t2i)


def filip_contrastive_loss(img_tokens: torch.Tensor, img_mask: torch.Tensor | None,
                           text_tokens: torch.Tensor, text_mask: torch.Tensor | None,
                           logit_scale: float | torch.Tensor, *, gather: bool = False,
                           gather_with_grad: bool = True) -> torch.Tensor:
    """FILIP token-wise contrastive loss (Table 6 ablation).

    Image -> text uses ``sim_i2t`` row-wise; text -> image uses ``sim_t2i`` column-wise; each
    is a cross-entropy with the matching pair as the positive; the two are averaged.

    Args:
        img_tokens: ``[B, Ni, D]`` image tokens.
        img_mask: ``[B, Ni]`` valid-token mask or None.
        text_tokens: ``[B, Lt, D]`` text tokens, row ``i`` pairs with image ``i``.
        text_mask: ``[B, Lt]`` valid-token mask or None.
        logit_scale: ``1 / tau``.
        gather: gather all four tensors over ranks (same token counts on every rank).
        gather_with_grad: see :func:`gather_batch`.

    Returns:
        Scalar loss.
    """
    if img_tokens.shape[0] != text_tokens.shape[0]:
        raise ValueError(f"{img_tokens.shape[0]} images but {text_tokens.shape[0]} captions")
    if gather:
        img_tokens = gather_batch(img_tokens, gather_with_grad)
        text_tokens = gather_batch(text_tokens, gather_with_grad)
        if img_mask is not None:
            img_mask = gather_batch(img_mask.to(torch.uint8), False).bool()
        if text_mask is not None:
            text_mask = gather_batch(text_mask.to(torch.uint8), False).bool()
    sim_i2t, sim_t2i = filip_similarity(img_tokens, img_mask, text_tokens, text_mask)  # [N, N] x2
    labels = torch.arange(sim_i2t.shape[0], device=sim_i2t.device)
    loss_i2t = F.cross_entropy(logit_scale * sim_i2t, labels)
    loss_t2i = F.cross_entropy(logit_scale * sim_t2i.T, labels)
    return 0.5 * (loss_i2t + loss_t2i)


@dataclass
class ContrastiveLoss:
    """The configured ``L_con`` (``cfg.contrastive`` picks CLIP or FILIP).

    Args:
        kind: ``"clip"`` or ``"filip"``.
        gather: gather over ranks for more negatives.
        gather_with_grad: differentiable gather.
    """

    kind: str = "clip"
    gather: bool = True
    gather_with_grad: bool = True

    def __post_init__(self) -> None:
        if self.kind not in ("clip", "filip"):
            raise ValueError(f"contrastive kind must be 'clip' or 'filip', got {self.kind!r}")

    @classmethod
    def from_config(cls, cfg: LossConfig) -> "ContrastiveLoss":
        """Build from a :class:`~vloss.config.LossConfig`."""
        return cls(kind=cfg.contrastive, gather=cfg.gather_contrastive,
                   gather_with_grad=cfg.gather_with_grad)

    def __call__(self, img: torch.Tensor, text: torch.Tensor, logit_scale: float | torch.Tensor,
                 img_mask: torch.Tensor | None = None,
                 text_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Compute ``{"loss_con": scalar}``.

        Args:
            img: ``[B, D]`` (clip) or ``[B, Ni, D]`` (filip).
            text: ``[B, D]`` (clip) or ``[B, Lt, D]`` (filip).
            logit_scale: ``1 / tau``.
            img_mask: filip only, ``[B, Ni]``.
            text_mask: filip only, ``[B, Lt]``.
        """
        if self.kind == "clip":
            loss = clip_contrastive_loss(img, text, logit_scale, gather=self.gather,
                                         gather_with_grad=self.gather_with_grad)
        else:
            loss = filip_contrastive_loss(img, img_mask, text, text_mask, logit_scale,
                                          gather=self.gather, gather_with_grad=self.gather_with_grad)
        return {"loss_con": loss}
