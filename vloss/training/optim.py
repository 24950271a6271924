"""Optimizer parameter groups and the learning-rate schedule (paper Sec. 4.2).

AdamW with lr 2e-4, the CLIP text encoder at 2e-5, the image backbone at 0.1x (the paper's code
base), decayed x0.1 at epochs 8 and 11 of 12, with an optional linear warmup. The schedule is per
optimizer step (iteration), so runs of any length get the same shape: `milestones_for` places
the paper's epoch milestones at the same fraction of the run's total steps. A run of several
stages (pretraining, then fine-tuning) gets that shape in every stage.

Weight decay is not applied to (the usual Mask2Former / CLIP practice):
- biases and every other parameter with fewer than two dimensions (norm gains, scalars);
- all parameters of normalization layers (BatchNorm, LayerNorm, GroupNorm, RMSNorm, and any
  module whose class name contains "Norm", e.g. timm's LayerNorm2d);
- all parameters of `nn.Embedding` modules (object queries, token embeddings);
- parameters whose own name contains "embed" (positional / level / query embeddings held as
  bare `nn.Parameter`s), "logit_scale", "relative_position_bias_table" or "temperature".
Parameters with `requires_grad=False` are left out of every group (the optimizer never sees
them); a parameter shared by two modules appears once.

The settings, :class:`~vloss.config.OptimConfig`, live with the other recipes in :mod:`vloss.config`
(which imports no torch).

Pure PyTorch: no ray import.
"""

from __future__ import annotations

import bisect
from typing import Any, Sequence

import torch
from torch import nn

from vloss.config import OptimConfig  # the settings; importing them from here works too

# name fragments of parameters that never get weight decay (matched on the leaf name only)
NO_DECAY_NAME_KEYS: tuple[str, ...] = ("embed", "logit_scale", "relative_position_bias_table",
                                       "temperature")
_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm,
               nn.RMSNorm)
_EMBEDDING_TYPES = (nn.Embedding, nn.EmbeddingBag)


def is_no_decay(name: str, param: nn.Parameter, owner: nn.Module) -> bool:
    """Whether parameter `name` (leaf name, e.g. "bias") held by module `owner` skips decay."""
    if param.ndim <= 1:
        return True
    if isinstance(owner, _NORM_TYPES) or "norm" in type(owner).__name__.lower():
        return True
    if isinstance(owner, _EMBEDDING_TYPES):
        return True
    return any(key in name for key in NO_DECAY_NAME_KEYS)


def param_groups(model: nn.Module, base_lr: float, text_lr: float, weight_decay: float,
                 text_prefix: str = "text.", backbone_lr: float | None = None,
                 backbone_prefix: str = "backbone.") -> list[dict[str, Any]]:
    """Split trainable parameters into AdamW groups by (text encoder / backbone / rest, weight decay?).

    Args:
        model: the network; parameters whose full name starts with `text_prefix` belong to
            the text encoder.
        base_lr: learning rate of non-text parameters.
        text_lr: learning rate of text-encoder parameters.
        weight_decay: decay of the decayed groups (the others get 0.0).
        text_prefix: name prefix of the text encoder, e.g. "text." for `model.text`.
        backbone_lr: learning rate of the parameters under `backbone_prefix` (None: base_lr,
            and they stay in the "decay" / "no_decay" groups).
        backbone_prefix: name prefix of the image backbone, e.g. "backbone.".

    Returns:
        Up to six groups, in this order and without empty ones: "decay", "no_decay",
        "backbone_decay", "backbone_no_decay" (only with `backbone_lr`), "text_decay",
        "text_no_decay". Each has keys params, lr, weight_decay, name and param_names (the full
        names, for logging and tests). AdamW keeps the extra keys.
    """
    if not any(n.startswith(text_prefix) for n, _ in model.named_parameters()):
        raise ValueError(f"param_groups: no parameter name starts with text_prefix "
                         f"{text_prefix!r}; model parameter roots are "
                         f"{sorted({n.split('.')[0] for n, _ in model.named_parameters()})}")
    groups: dict[str, dict[str, Any]] = {}
    bb_lr = base_lr if backbone_lr is None else backbone_lr
    for key, lr, wd in (("decay", base_lr, weight_decay), ("no_decay", base_lr, 0.0),
                        ("backbone_decay", bb_lr, weight_decay), ("backbone_no_decay", bb_lr, 0.0),
                        ("text_decay", text_lr, weight_decay), ("text_no_decay", text_lr, 0.0)):
        groups[key] = {"name": key, "lr": lr, "weight_decay": wd, "params": [], "param_names": []}
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for leaf, param in module.named_parameters(recurse=False):
            if id(param) in seen or not param.requires_grad:
                continue
            seen.add(id(param))
            full = f"{module_name}.{leaf}" if module_name else leaf
            if full.startswith(text_prefix):
                part = "text_"
            elif backbone_lr is not None and full.startswith(backbone_prefix):
                part = "backbone_"
            else:
                part = ""
            key = part + ("no_decay" if is_no_decay(leaf, param, module) else "decay")
            groups[key]["params"].append(param)
            groups[key]["param_names"].append(full)
    return [g for g in groups.values() if g["params"]]


def milestones_for(total_steps: int, epochs: int = 12, at: Sequence[int] = (8, 11)) -> list[int]:
    """Steps at which the lr decays, for a run of `total_steps` standing for `epochs` epochs.

    Milestone m (in epochs) becomes step floor(total_steps * m / epochs): with equal-length
    epochs of S steps and total_steps = epochs * S this is exactly m * S, the first step of
    (0-based) epoch m, i.e. the decay takes effect after m full epochs, as in MMDetection.

    Args:
        total_steps: optimizer steps of the whole run.
        epochs: the epoch count the milestones refer to (paper: 12).
        at: milestone epochs, increasing, each in (0, epochs] (paper: 8 and 11).
    """
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"milestones_for: total_steps must be a positive int, got {total_steps!r}")
    if epochs < 1:
        raise ValueError(f"milestones_for: epochs must be >= 1, got {epochs}")
    at = list(at)
    if any(not 0 < m <= epochs for m in at) or at != sorted(at):
        raise ValueError(f"milestones_for: milestones {at} must increase within (0, {epochs}]")
    return [(total_steps * m) // epochs for m in at]


class MultiStepWarmup:
    """lr multiplier for step t: warmup(t - s) * gamma ** (milestones in [s, t]), s = start of t's stage.

    A run is one stage, or several (Table 4 "w/ Pretrain": detection pretraining, then a fine-tune
    with its own schedule): each stage restarts the warmup and counts only its own milestones.
    warmup(u) = warmup_factor + (1 - warmup_factor) * u / warmup_iters for u < warmup_iters,
    else 1. A callable object (not a lambda), so `LambdaLR.state_dict()` saves its fields and a
    checkpoint loads with `torch.load(..., weights_only=True)`.

    Args:
        milestones: steps at which a decay applies (sorted; duplicates decay twice).
        gamma: decay factor.
        warmup_iters: warmup length in steps (0: none).
        warmup_factor: multiplier at step 0 of the warmup, in (0, 1].
        stage_starts: first step of each stage (sorted, starting at 0).
    """

    def __init__(self, milestones: Sequence[int], gamma: float = 0.1, warmup_iters: int = 0,
                 warmup_factor: float = 0.001, stage_starts: Sequence[int] = (0,)) -> None:
        if list(milestones) != sorted(milestones):
            raise ValueError(f"MultiStepWarmup: milestones must be sorted, got {list(milestones)}")
        if warmup_iters < 0 or not 0 < warmup_factor <= 1:
            raise ValueError(f"MultiStepWarmup: need warmup_iters >= 0 and 0 < warmup_factor <= 1, "
                             f"got {warmup_iters}, {warmup_factor}")
        if not stage_starts or stage_starts[0] != 0 or list(stage_starts) != sorted(stage_starts):
            raise ValueError(f"MultiStepWarmup: stage_starts must be sorted and start at 0, got {list(stage_starts)}")
        self.milestones = [int(m) for m in milestones]
        self.gamma = float(gamma)
        self.warmup_iters = int(warmup_iters)
        self.warmup_factor = float(warmup_factor)
        self.stage_starts = [int(s) for s in stage_starts]

    def __call__(self, step: int) -> float:
        start = self.stage_starts[bisect.bisect_right(self.stage_starts, step) - 1]
        decays = bisect.bisect_right(self.milestones, step) - bisect.bisect_left(self.milestones, start)
        factor = self.gamma ** decays
        if step - start < self.warmup_iters:
            alpha = (step - start) / self.warmup_iters
            factor *= self.warmup_factor + (1.0 - self.warmup_factor) * alpha
        return factor


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over `param_groups(model, ...)` with the settings of `cfg`."""
    backbone_lr = None if cfg.backbone_lr_mult == 1.0 else cfg.base_lr * cfg.backbone_lr_mult
    groups = param_groups(model, cfg.base_lr, cfg.text_lr, cfg.weight_decay, cfg.text_prefix,
                          backbone_lr=backbone_lr, backbone_prefix=cfg.backbone_prefix)
    return torch.optim.AdamW(groups, lr=cfg.base_lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


def _stages(total_steps: int | Sequence[int], cfg: OptimConfig) -> tuple[list[int], list[int]]:
    """(first step of every stage, every decay step) of a run of one or several stages."""
    stages = [total_steps] if isinstance(total_steps, int) else list(total_steps)
    starts, milestones, offset = [], [], 0
    for length in stages:
        starts.append(offset)
        milestones += [offset + m for m in milestones_for(length, cfg.reference_epochs, cfg.milestone_epochs)]
        offset += length
    return starts, milestones


def lr_milestones(total_steps: int | Sequence[int], cfg: OptimConfig) -> list[int]:
    """The steps at which the learning rate decays (what :func:`build_lr_scheduler` uses)."""
    return _stages(total_steps, cfg)[1]


def build_lr_scheduler(optimizer: torch.optim.Optimizer, total_steps: int | Sequence[int],
                       cfg: OptimConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step LambdaLR: multi-step decay at the scaled milestones of every stage, plus optional warmup.

    Call `scheduler.step()` once after every `optimizer.step()`; step t (0-based) then runs
    at group_lr * MultiStepWarmup(t). Save `scheduler.state_dict()` beside the optimizer's.

    Args:
        optimizer: optimizer whose groups carry their own lr (text group at text_lr).
        total_steps: optimizer steps of the whole run (e.g. `StepSchedule.total_steps`), or the
            steps of each stage when the run has several (`StepSchedule.stage_lengths`): every
            stage gets the milestones of `cfg` scaled to its own length.
        cfg: milestones, gamma and warmup settings.
    """
    starts, milestones = _stages(total_steps, cfg)
    factor = MultiStepWarmup(milestones, cfg.gamma, cfg.warmup_iters, cfg.warmup_factor, starts)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=factor)
