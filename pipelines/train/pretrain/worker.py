"""The Ray Train loop of the tower pretraining: one CLIP step per batch, checkpoints that resume exactly."""

from __future__ import annotations

import math
import os
import tempfile
import time
from typing import Any

import torch
import torch.nn.functional as F

from pipelines.train.pretrain.corpus import BatchPlan, label_targets, load_images, make_batch, read_corpus
from pipelines.train.stop import stop_check
from vloss.config import preset
from vloss.config_io import from_dict
from vloss.losses.contrastive import clip_contrastive_loss
from vloss.pretrain.config import PretrainConfig
from vloss.pretrain.towers import ClipTowers

STATE_FILE = "pretrain_state.pt"


def build_towers(pre: PretrainConfig) -> ClipTowers:
    """The towers of ``pre.preset``, initialised from ``pre.seed`` (the same on every rank)."""
    torch.manual_seed(pre.seed)
    model = preset(pre.preset).model
    return ClipTowers(model.backbone, model.text)


def param_groups(towers: ClipTowers, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: no decay on biases, norms, embeddings, position tables and the temperature (as CLIP)."""
    decay, no_decay = [], []
    for name, p in towers.named_parameters():
        if not p.requires_grad:
            continue
        flat = p.ndim < 2 or "embedding" in name or "logit_scale" in name or "position" in name
        (no_decay if flat else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_at(pre: PretrainConfig, step: int, total: int) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to 0 at ``total`` (0-based ``step``)."""
    if step < pre.warmup_steps:
        return pre.lr * (step + 1) / pre.warmup_steps
    span = max(1, total - pre.warmup_steps)
    return 0.5 * pre.lr * (1 + math.cos(math.pi * min(1.0, (step - pre.warmup_steps) / span)))


def label_loss(img: torch.Tensor, prompts: torch.Tensor, scale: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Classification of each image against the class prompts, the target spread over the named classes.

    Args:
        img: ``[B, D]`` image embeddings.
        prompts: ``[C, D]`` class-prompt embeddings.
        scale: temperature ``1 / tau``.
        targets: ``[B, C]`` 0/1, which classes each image's captions name.

    Returns:
        Mean over the images that name at least one class of ``-sum_c q_c log softmax(s * cos)_c``
        with ``q`` the targets normalised to sum 1 (0 when no image names a class).
    """
    logits = scale * F.normalize(img, dim=-1) @ F.normalize(prompts, dim=-1).T
    named = targets.sum(-1) > 0
    if not bool(named.any()):
        return logits.sum() * 0.0
    q = targets[named] / targets[named].sum(-1, keepdim=True)
    return -(q * F.log_softmax(logits[named], dim=-1)).sum(-1).mean()


def save_state(towers: ClipTowers, opt: torch.optim.Optimizer, step: int, directory: str) -> None:
    """Write the resumable state (weights, optimiser, steps done) into ``directory``."""
    torch.save({"model": towers.state_dict(), "optimizer": opt.state_dict(), "step": step},
               os.path.join(directory, STATE_FILE))


def load_state(directory: str) -> dict[str, Any]:
    """Read what :func:`save_state` wrote (``weights_only=True``)."""
    from vloss.checkpoint import _torch_load

    return _torch_load(os.path.join(directory, STATE_FILE))


def pretrain_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point.

    Args:
        config: ``pretrain`` (PretrainConfig dict), ``captions`` and ``images`` (the corpus),
            ``classes`` (names of the label objective, may be empty), ``progress`` (the driver's
            progress actor, or None), ``stop`` (its stop-flag actor, :mod:`pipelines.train.stop`).
    """
    import ray.train
    import ray.train.torch

    pre = from_dict(config["pretrain"], PretrainConfig)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    corpus = read_corpus(config["captions"], config["images"], config.get("classes") or None)
    use_labels = bool(corpus.classes) and pre.label_weight > 0
    prompts = [pre.label_template.format(name.replace("_", " ")) for name in corpus.classes] if use_labels else []
    plan = BatchPlan(len(corpus), pre.batch_size, world, pre.epochs, pre.seed)
    images = load_images(corpus.paths, pre.image_size)
    towers = build_towers(pre)
    opt = torch.optim.AdamW(param_groups(towers, pre.weight_decay), lr=pre.lr, betas=(0.9, 0.98), eps=1e-6)
    start = 0
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as directory:
            state = load_state(directory)
        towers.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["step"])
    model = ray.train.torch.prepare_model(towers) if world > 1 else towers.to(device)
    total = min(plan.total_steps, pre.max_steps or plan.total_steps)
    sink = config.get("progress") if rank == 0 else None
    check_stop = stop_check(config.get("stop"), rank, world, device)
    t_log, wait = time.time(), 0.0
    for step in range(start, total):
        for group in opt.param_groups:
            group["lr"] = lr_at(pre, step, plan.total_steps)
        t0 = time.time()
        epoch, indices = plan.rank_indices(step, rank)
        x, texts = make_batch(images, corpus, indices, pre.seed, epoch, pre.min_crop, pre.flip)
        wait += time.time() - t0
        img, txt, cls, scale = model(x.to(device), texts, prompts)
        con = clip_contrastive_loss(img, txt, scale, gather=world > 1)
        loss = con
        if use_labels:
            lab = label_loss(img, cls, scale, label_targets(corpus, indices).to(device))
            loss = con + pre.label_weight * lab
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done = step + 1
        metrics = {"step": done, "epoch": epoch, "task": "pretrain", "contrastive/total": float(con.detach()),
                   "lr": opt.param_groups[0]["lr"], "logit_scale": float(scale.detach())}
        if use_labels:
            metrics["labels/total"] = float(lab.detach())
        stop = done < total and check_stop()  # SIGTERM: checkpoint this step and leave
        if stop:
            metrics["stopped"] = 1
        if sink is not None and (done % pre.log_every == 0 or done == total or stop):
            elapsed = max(time.time() - t_log, 1e-9)
            steps = done - max(start, done - pre.log_every)
            metrics.update(images_per_s=steps * pre.batch_size / elapsed, data_wait_frac=min(1.0, wait / elapsed),
                           total_steps=total)
            sink.put.remote(metrics)
            t_log, wait = time.time(), 0.0
        if done % pre.checkpoint_every == 0 or done == total or stop:
            if rank == 0:
                with tempfile.TemporaryDirectory() as tmp:
                    save_state(towers, opt, done, tmp)
                    ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
            else:
                ray.train.report(metrics)
        if stop:
            break
