"""One optimizer step's forward and backward over micro-batches (gradient accumulation).

The paper trains with a global batch of 32 segmentation images (Sec. 4.2). When a worker cannot
hold its share at once (``train.micro_batch``), its batch is cut into micro-batches that run
forward and backward one after another, gradients adding up in ``.grad``; DDP synchronises only
after the last one (``no_sync`` before). The step then equals the step on the whole batch:

* the loss normalisers (masks, classification weight sum) are those of the whole batch
  (:meth:`vloss.losses.SetCriterion.normalizers`), so each micro-batch contributes its share of
  one sum instead of a mean of its own;
* every image draws its matching and loss points from its own generator, seeded by the run's seed,
  the step and the image's place in the global batch (:func:`image_generators`), so it draws the
  same points in whichever micro-batch, and on whichever worker, it lands.

Drop-path and dropout masks are drawn per forward from torch's generator, so with them on, a cut
batch draws other (identically distributed) masks than the whole one, as in any accumulation.

Caption batches are not cut: the contrastive loss compares every image with every caption of the
batch, and a micro-batch would see fewer negatives (a different loss, not the same one
accumulated). Their per-worker batch runs whole.

Used by the Ray trainer (:mod:`pipelines.train.trainer`) and by the test that checks the
equality; no Ray here.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any, Callable, ContextManager

import torch

from vloss.config import LossConfig
from vloss.losses import ContrastiveLoss, SetCriterion, weighted_total
from vloss.training.step import compute_losses
from vloss.training.tasks import training_task


def micro_batch_sizes(batch: int, micro: int) -> list[int]:
    """Sizes of the micro-batches one worker's ``batch`` is cut into (``micro`` 0: no cut).

    The first ones take ``micro`` images and the last the rest, e.g. 11 at 4 -> [4, 4, 3].
    """
    if batch < 1:
        raise ValueError(f"a batch of {batch} images")
    if micro <= 0 or micro >= batch:
        return [batch]
    return [micro] * (batch // micro) + ([batch % micro] if batch % micro else [])


def image_generators(run_seed: int, global_step: int, first: int, count: int,
                     device: torch.device) -> list[torch.Generator]:
    """One generator per image of a step, seeded by (run seed, step, the image's place in the global batch).

    The place counts over all ranks (rank ``r`` starts after the images of the ranks before it), so
    an image draws the same points however the global batch is split over workers and micro-batches.

    Args:
        run_seed: the run's seed.
        global_step: the step (0-based, over the whole run).
        first: the global place of this worker's first image in the step's batch.
        count: images in this worker's batch.
        device: where the draws happen (a CUDA generator on a GPU, so points never cross the bus).
    """
    gens = []
    for i in range(first, first + count):
        digest = hashlib.sha256(f"{run_seed}/{global_step}/image/{i}".encode()).digest()
        gens.append(torch.Generator(device=device).manual_seed(int.from_bytes(digest[:8], "little") >> 1))
    return gens


def slice_batch(batch: dict[str, Any], lo: int, hi: int) -> dict[str, Any]:
    """Images ``lo:hi`` of a collated batch (tensors cut on dim 0, lists sliced, the rest kept)."""
    return {k: (v[lo:hi] if isinstance(v, (torch.Tensor, list, tuple)) else v) for k, v in batch.items()}


def forward_backward(forward: Callable[..., dict[str, Any]], task: str, batch: dict[str, Any], *,
                     micro: int, run_seed: int, global_step: int, first_image: int, num_queries: int,
                     loss_cfg: LossConfig, criterion: SetCriterion,
                     contrastive: ContrastiveLoss | None, autocast: ContextManager | None = None,
                     scaler: torch.amp.GradScaler | None = None,
                     where: str = "") -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Forward and backward of one worker's batch of one step, in micro-batches of ``micro``.

    The caller zeroes the gradients before and steps the optimizer after.

    Args:
        forward: the (possibly DDP-wrapped) :class:`vloss.training.step.TaskForward`.
        task: ``panoptic``, ``detection`` or ``captions``.
        batch: the collated batch: ``images [B, 3, S, S]`` and ``targets`` (dense) or ``captions``.
        micro: images per forward and backward (0: the whole batch; ignored for captions).
        run_seed, global_step, first_image: what the per-image point generators are seeded by
            (:func:`image_generators`; ``first_image``: this worker's offset in the global batch).
        num_queries: the decoder's ``Q`` (the classification normaliser).
        loss_cfg, criterion, contrastive: what :func:`vloss.training.step.compute_losses` needs.
        autocast: the precision context of the forward (None: none).
        scaler: the fp16 gradient scaler (None: plain backward).
        where: names the step in the non-finite loss error.

    Returns:
        ``(unweighted loss terms, Eq. 6 total)`` of the whole batch, detached.

    Raises:
        FloatingPointError: a micro-batch's loss is not finite (before its backward).
    """
    n = int(batch["images"].shape[0])
    dense = training_task(task).dense
    sizes = micro_batch_sizes(n, micro) if dense else [n]
    device = batch["images"].device
    gens = image_generators(run_seed, global_step, first_image, n, device) if dense else None
    norms = None
    if dense:
        positive_only = training_task(task).partial_labels and loss_cfg.positive_only_detection
        norms = criterion.normalizers(batch["targets"], num_queries, positive_only, device=device)
    no_sync = getattr(forward, "no_sync", None)
    sums: dict[str, torch.Tensor] = {}
    total_sum = torch.zeros((), device=device)
    lo = 0
    for i, size in enumerate(sizes):
        part = slice_batch(batch, lo, lo + size) if len(sizes) > 1 else batch
        last = i == len(sizes) - 1
        sync = no_sync() if (no_sync is not None and not last) else contextlib.nullcontext()
        with sync:
            with autocast if autocast is not None else contextlib.nullcontext():
                out = forward(task, part["images"]) if dense else forward(task, part["images"], part["captions"])
            losses = compute_losses(task, out, part, loss_cfg, criterion, contrastive,
                                    generator=gens[lo:lo + size] if gens is not None else None, normalizers=norms)
            total = weighted_total(losses, loss_cfg)
            if not torch.isfinite(total):
                raise FloatingPointError(f"non-finite loss {where}({task}): "
                                         f"{ {k: float(v) for k, v in losses.items()} }")
            (scaler.scale(total) if scaler is not None else total).backward()
        for k, v in losses.items():
            sums[k] = sums[k] + v.detach() if k in sums else v.detach()
        total_sum = total_sum + total.detach()
        lo += size
    return sums, total_sum
