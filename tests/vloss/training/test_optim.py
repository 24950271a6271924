"""Tests of the AdamW parameter groups and the per-step lr schedule (vloss/training/optim.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vloss.training.optim import (
    MultiStepWarmup,
    OptimConfig,
    build_lr_scheduler,
    build_optimizer,
    lr_milestones,
    milestones_for,
    param_groups,
)


class TinyText(nn.Module):
    """Stands in only for parameter naming: the shapes a CLIP text tower holds."""

    def __init__(self) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(10, 8)
        self.positional_embedding = nn.Parameter(torch.randn(6, 8))
        self.ln_final = nn.LayerNorm(8)
        self.proj = nn.Linear(8, 8)
        self.text_projection = nn.Parameter(torch.randn(8, 8))


class TinyModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.gn = nn.GroupNorm(2, 4)
        self.query_feat = nn.Embedding(5, 8)
        self.pos_embed = nn.Parameter(torch.randn(1, 5, 8))
        self.logit_scale = nn.Parameter(torch.tensor(2.0))
        self.head = nn.Linear(8, 8)
        self.head_alias = self.head  # shared module: its parameters must appear once
        self.tied = nn.Linear(8, 8)
        self.tied.weight = self.head.weight  # a parameter shared by two modules: listed once
        self.textual_head = nn.Linear(8, 3)  # not the text encoder despite the name
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)
        self.text = TinyText()


EXPECTED = {
    "decay": {"conv.weight", "head.weight", "textual_head.weight"},
    "no_decay": {"conv.bias", "bn.weight", "bn.bias", "gn.weight", "gn.bias", "query_feat.weight",
                 "pos_embed", "logit_scale", "head.bias", "tied.bias", "textual_head.bias"},
    "text_decay": {"text.proj.weight", "text.text_projection"},
    "text_no_decay": {"text.token_embedding.weight", "text.positional_embedding",
                      "text.ln_final.weight", "text.ln_final.bias", "text.proj.bias"},
}


def test_param_groups_split_text_and_no_decay_params():
    model = TinyModel()
    groups = param_groups(model, base_lr=2e-4, text_lr=2e-5, weight_decay=0.05)
    assert [g["name"] for g in groups] == ["decay", "no_decay", "text_decay", "text_no_decay"]
    by_name = {g["name"]: g for g in groups}
    for name, expected in EXPECTED.items():
        assert set(by_name[name]["param_names"]) == expected, name
        assert len(by_name[name]["params"]) == len(expected)
    assert by_name["decay"]["lr"] == by_name["no_decay"]["lr"] == 2e-4
    assert by_name["text_decay"]["lr"] == by_name["text_no_decay"]["lr"] == 2e-5
    assert by_name["decay"]["weight_decay"] == by_name["text_decay"]["weight_decay"] == 0.05
    assert by_name["no_decay"]["weight_decay"] == by_name["text_no_decay"]["weight_decay"] == 0.0
    # every trainable parameter exactly once, frozen ones never
    listed = [id(p) for g in groups for p in g["params"]]
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert len(listed) == len(set(listed)) and set(listed) == trainable
    assert id(model.frozen.weight) not in listed


def test_param_groups_reject_a_text_prefix_that_matches_nothing():
    with pytest.raises(ValueError, match="text_encoder"):
        param_groups(TinyModel(), 2e-4, 2e-5, 0.05, text_prefix="text_encoder.")


def test_adamw_decays_only_the_decay_groups_at_their_own_lr():
    """With zero gradients AdamW's update is the decoupled decay alone: p <- p * (1 - lr * wd)."""
    torch.manual_seed(0)
    model = TinyModel()
    opt = build_optimizer(model, OptimConfig(weight_decay=0.05))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.zeros_like(p)
    opt.step()
    params = dict(model.named_parameters())
    for name in EXPECTED["decay"]:
        torch.testing.assert_close(params[name], before[name] * (1 - 2e-4 * 0.05), rtol=0, atol=1e-7)
        assert not torch.equal(params[name], before[name])
    for name in EXPECTED["text_decay"]:
        torch.testing.assert_close(params[name], before[name] * (1 - 2e-5 * 0.05), rtol=0, atol=1e-7)
        assert not torch.equal(params[name], before[name])
    for name in EXPECTED["no_decay"] | EXPECTED["text_no_decay"] | {"frozen.weight"}:
        assert torch.equal(params[name], before[name]), name


def test_milestones_scale_with_run_length():
    for steps_per_epoch in (1, 3, 7, 250):
        assert milestones_for(12 * steps_per_epoch) == [8 * steps_per_epoch, 11 * steps_per_epoch]
    assert milestones_for(100) == [66, 91]  # floor(100 * 8 / 12), floor(100 * 11 / 12)
    assert milestones_for(30, epochs=3, at=(2,)) == [20]
    for bad in (dict(total_steps=0), dict(total_steps=10, at=(11, 8)), dict(total_steps=10, at=(13,))):
        with pytest.raises(ValueError):
            milestones_for(**bad)


def expected_factor(step: int, milestones, warmup: int, warmup_factor: float) -> float:
    factor = 0.1 ** sum(step >= m for m in milestones)
    if step < warmup:
        factor *= warmup_factor + (1 - warmup_factor) * step / warmup
    return factor


@pytest.mark.parametrize("warmup", [0, 5])
def test_lambda_lr_follows_the_formula_at_every_step(warmup):
    total = 36  # 12 "epochs" of 3 steps: decay after steps 24 and 33
    cfg = OptimConfig(warmup_iters=warmup, warmup_factor=0.01)
    model = TinyModel()
    opt = build_optimizer(model, cfg)
    sched = build_lr_scheduler(opt, total, cfg)
    seen = []
    for step in range(total):
        lrs = {g["name"]: g["lr"] for g in opt.param_groups}
        f = expected_factor(step, (24, 33), warmup, 0.01)
        assert lrs["decay"] == pytest.approx(2e-4 * f, rel=1e-12)
        assert lrs["no_decay"] == pytest.approx(2e-4 * f, rel=1e-12)
        assert lrs["text_decay"] == pytest.approx(2e-5 * f, rel=1e-12)
        assert lrs["text_decay"] == pytest.approx(lrs["decay"] / 10, rel=1e-12)
        seen.append(lrs["decay"])
        opt.step()
        sched.step()
    # the milestone boundaries themselves, written out
    assert seen[23] == pytest.approx(2e-4) and seen[24] == pytest.approx(2e-5)
    assert seen[32] == pytest.approx(2e-5) and seen[33] == pytest.approx(2e-6)
    if warmup:
        assert seen[0] == pytest.approx(2e-6) and seen[4] == pytest.approx(2e-4 * (0.01 + 0.99 * 0.8))
        assert seen[5] == pytest.approx(2e-4)


def test_scheduler_and_optimizer_resume_from_a_weights_only_checkpoint(tmp_path):
    cfg = OptimConfig(warmup_iters=4)
    torch.manual_seed(0)
    model = TinyModel()
    x = torch.randn(2, 8)

    def train_step(m, o, s):
        o.zero_grad()
        (m.head(x).square().mean() + m.text.proj(x).sum() * 1e-3).backward()
        o.step()
        s.step()

    opt = build_optimizer(model, cfg)
    sched = build_lr_scheduler(opt, 24, cfg)
    for _ in range(10):
        train_step(model, opt, sched)
    path = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict(), "optim": opt.state_dict(), "sched": sched.state_dict()},
               path)

    ref_lrs = []
    for _ in range(10):
        train_step(model, opt, sched)
        ref_lrs.append([g["lr"] for g in opt.param_groups])

    state = torch.load(path, map_location="cpu", weights_only=True)
    model2 = TinyModel()
    model2.load_state_dict(state["model"])
    opt2 = build_optimizer(model2, cfg)
    sched2 = build_lr_scheduler(opt2, 24, cfg)
    opt2.load_state_dict(state["optim"])
    sched2.load_state_dict(state["sched"])
    got = []
    for _ in range(10):
        train_step(model2, opt2, sched2)
        got.append([g["lr"] for g in opt2.param_groups])
    assert got == ref_lrs
    torch.testing.assert_close(model2.head.weight, model.head.weight)


def test_multistep_warmup_validates_arguments():
    with pytest.raises(ValueError):
        MultiStepWarmup([5, 3])
    with pytest.raises(ValueError):
        MultiStepWarmup([3], warmup_iters=2, warmup_factor=0.0)
    f = MultiStepWarmup([2, 2], gamma=0.5)  # duplicate milestones decay twice
    assert [f(t) for t in range(4)] == [1.0, 1.0, 0.25, 0.25]


# ---- the LR of every step, for every schedule mode (written schedule vs scheduler) --------------

def _written_lr(step: int, stages: list[int], base: float, gamma: float = 0.1) -> float:
    """The paper's rule written out: within each stage of L steps starting at S, the lr is
    base * gamma ** k where k counts the stage's decay points S + floor(L * 8 / 12) and
    S + floor(L * 11 / 12) at or before ``step``; every stage starts again at ``base``."""
    start = 0
    for length in stages:
        if step < start + length:
            k = sum(step >= start + (length * m) // 12 for m in (8, 11))
            return base * gamma ** k
        start += length
    raise AssertionError("step beyond the run")


@pytest.mark.parametrize("mode", ["stt", "mix", "pretrain", "panoptic"])
def test_lr_at_every_step_follows_the_written_schedule(mode):
    from pipelines.train.schedule import ScheduleConfig, StepSchedule, TaskData

    epochs = 24 if mode == "pretrain" else 12
    sched = StepSchedule(ScheduleConfig(mode=mode, epochs=epochs, caption_ratio=0.5,
                                        pretrain_epochs=12 if mode == "pretrain" else None,
                                        panoptic=TaskData(40, 8), detection=TaskData(56, 8),
                                        captions=TaskData(24, 8)))
    stages = sched.stage_lengths
    assert sum(stages) == sched.total_steps
    if mode == "pretrain":
        assert stages == [sched.epoch_offsets[12], sched.total_steps - sched.epoch_offsets[12]]
    else:
        assert stages == [sched.total_steps]
    model = TinyModel()
    cfg = OptimConfig(base_lr=2e-4, text_lr=2e-5, backbone_lr_mult=1.0)
    opt = build_optimizer(model, cfg)
    scheduler = build_lr_scheduler(opt, stages, cfg)
    for t in range(sched.total_steps):
        got = {g["name"]: g["lr"] for g in opt.param_groups}
        assert got["decay"] == pytest.approx(_written_lr(t, stages, 2e-4), rel=1e-12), (mode, t)
        assert got["text_decay"] == pytest.approx(_written_lr(t, stages, 2e-5), rel=1e-12), (mode, t)
        opt.step()
        scheduler.step()
    if mode == "pretrain":
        # the fine-tune has its own schedule: full lr at its start, decays at its epochs 8 and 11
        assert [sched.position(m) for m in lr_milestones(stages, cfg)] == [(8, 0), (11, 0), (20, 0), (23, 0)]


def test_backbone_trains_at_a_tenth_of_the_base_lr_by_default():
    """OptimConfig's default backbone_lr_mult (0.1, the paper's code base) puts every backbone
    parameter, and only those, in groups at base_lr / 10."""
    from tests.vloss.model.conftest import tiny_cfg
    from vloss.config import paper
    from vloss.model import VLOSS

    assert OptimConfig().backbone_lr_mult == 0.1 and paper().model.backbone.name.startswith("swin_tiny")
    model = VLOSS(tiny_cfg().model)
    opt = build_optimizer(model, OptimConfig(base_lr=2e-4, text_lr=2e-5))
    by_name = {g["name"]: g for g in opt.param_groups}
    assert [g["name"] for g in opt.param_groups] == ["decay", "no_decay", "backbone_decay", "backbone_no_decay",
                                                     "text_decay", "text_no_decay"]
    backbone = {n for n, p in model.named_parameters() if n.startswith("backbone.") and p.requires_grad}
    in_groups = set(by_name["backbone_decay"]["param_names"]) | set(by_name["backbone_no_decay"]["param_names"])
    assert in_groups == backbone and backbone
    assert by_name["backbone_decay"]["lr"] == by_name["backbone_no_decay"]["lr"] == pytest.approx(2e-5, rel=1e-12)
    assert by_name["decay"]["lr"] == 2e-4 and by_name["text_decay"]["lr"] == 2e-5
    rest = by_name["decay"]["param_names"] + by_name["no_decay"]["param_names"]
    assert not any(n.startswith("backbone.") for n in rest)
    # 1.0 turns the multiplier off: the backbone joins the base groups
    plain = build_optimizer(model, OptimConfig(base_lr=2e-4, text_lr=2e-5, backbone_lr_mult=1.0))
    assert [g["name"] for g in plain.param_groups] == ["decay", "no_decay", "text_decay", "text_no_decay"]
