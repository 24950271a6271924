"""SetCriterion: formulas, positive-only mode, convergence to dense losses, deep supervision, Eq. 6."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vloss.losses import (
    LossConfig,
    SetCriterion,
    dense_bce_loss,
    dense_dice_loss,
    dice_loss,
    sigmoid_ce_loss,
    weighted_total,
)


def _smooth(gen: torch.Generator, n: int, size: int, coarse: int = 4) -> torch.Tensor:
    x = torch.randn(n, 1, coarse, coarse, generator=gen)
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)[:, 0]  # [n, size, size]


def _batch(seed: int = 0, b: int = 2, q: int = 6, c: int = 4, m=(3, 2), h: int = 8, big: int = 32):
    g = torch.Generator().manual_seed(seed)
    outputs = {"pred_logits": torch.randn(b, q, c + 1, generator=g).requires_grad_(),
               "pred_masks": (torch.randn(b, q, h, h, generator=g) * 2).requires_grad_(),
               "img_embed": None, "pred_embeds": torch.randn(b, q, 16, generator=g)}
    targets = [{"labels": torch.randint(0, c, (n,), generator=g),
                "masks": _smooth(g, n, big) > 0} for n in m]
    return outputs, targets


def test_mask_loss_formulas_on_hand_cases():
    x = torch.tensor([[0.0, math.log(3.0)]])  # sigmoid: 0.5, 0.75
    t = torch.tensor([[1.0, 0.0]])
    # BCE: -log(0.5) and -log(1 - 0.75); mean over the two points; one mask
    assert sigmoid_ce_loss(x, t, 1.0).item() == pytest.approx((math.log(2) + math.log(4)) / 2)
    assert sigmoid_ce_loss(x, t, 2.0).item() == pytest.approx((math.log(2) + math.log(4)) / 4)
    # dice: 1 - (2 * 0.5 + 1) / (1.25 + 1 + 1)
    assert dice_loss(x, t, 1.0).item() == pytest.approx(1 - 2.0 / 3.25)
    # perfect, confident prediction of an empty and a full mask: dice -> 0
    big = torch.tensor([[-30.0] * 4, [30.0] * 4])
    assert dice_loss(big, torch.tensor([[0.0] * 4, [1.0] * 4]), 2.0).item() == pytest.approx(0.0, abs=1e-6)


def test_dense_references_resize_logits_to_target():
    logits = torch.tensor([[[0.0, 2.0]]])  # [1, 1, 2] -> upsampled to 1x4: 0, 0.5, 1.5, 2
    target = torch.tensor([[[True, False, True, False]]])
    up = torch.tensor([0.0, 0.5, 1.5, 2.0])
    t = torch.tensor([1.0, 0.0, 1.0, 0.0])
    expected_bce = F.binary_cross_entropy_with_logits(up, t)
    p = up.sigmoid()
    expected_dice = 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
    assert dense_bce_loss(logits, target, 1.0).item() == pytest.approx(expected_bce.item(), rel=1e-6)
    assert dense_dice_loss(logits, target, 1.0).item() == pytest.approx(expected_dice.item(), rel=1e-6)


def test_point_sampled_losses_converge_to_dense():
    g = torch.Generator().manual_seed(0)
    n = 6
    pred = _smooth(g, n, 16) * 4  # [n, 16, 16] logits at "H/4"
    tgt = _smooth(g, n, 64) > 0  # [n, 64, 64] targets at input size
    targets = [{"labels": torch.zeros(n, dtype=torch.int64), "masks": tgt}]
    indices = [(torch.arange(n), torch.arange(n))]
    dense = {"loss_bce": dense_bce_loss(pred, tgt, n).item(), "loss_dice": dense_dice_loss(pred, tgt, n).item()}

    def mean_rel_error(points: int, seeds: int) -> dict[str, float]:
        crit = SetCriterion(LossConfig(num_points=points, importance_sample_ratio=0.0))
        err = {"loss_bce": 0.0, "loss_dice": 0.0}
        for s in range(seeds):
            out = crit.loss_masks(pred[None], targets, indices, n, generator=torch.Generator().manual_seed(s))
            for k in err:
                err[k] += abs(out[k].item() - dense[k]) / dense[k] / seeds
        return err

    coarse, fine = mean_rel_error(64, 8), mean_rel_error(16384, 2)
    for k in ("loss_bce", "loss_dice"):
        assert coarse[k] > fine[k], (k, coarse, fine)
        assert fine[k] < 0.015, (k, fine)


def test_importance_sampling_concentrates_on_uncertain_points():
    """With importance sampling the BCE is dominated by boundary points, so it exceeds the dense mean."""
    g = torch.Generator().manual_seed(1)
    pred = _smooth(g, 4, 16) * 6
    tgt = pred.detach().repeat_interleave(4, 1).repeat_interleave(4, 2) > 0  # well-predicted masks
    targets = [{"labels": torch.zeros(4, dtype=torch.int64), "masks": tgt}]
    idx = [(torch.arange(4), torch.arange(4))]
    gen = torch.Generator().manual_seed(0)
    imp = SetCriterion(LossConfig(num_points=2048)).loss_masks(pred[None], targets, idx, 4, gen)
    uni = SetCriterion(LossConfig(num_points=2048, importance_sample_ratio=0.0)).loss_masks(
        pred[None], targets, idx, 4, gen)
    assert imp["loss_bce"].item() > 2 * uni["loss_bce"].item()


def test_cls_loss_is_weighted_mean_over_queries():
    outputs, targets = _batch(3)
    cfg = LossConfig(num_points=128)
    crit = SetCriterion(cfg)
    indices = crit.matcher(outputs, targets, generator=torch.Generator().manual_seed(0))
    logits = outputs["pred_logits"].detach()
    b, q, c1 = logits.shape
    num, den = 0.0, 0.0
    pos_num, pos_cnt = 0.0, 0
    for i in range(b):
        assigned = {int(r): int(targets[i]["labels"][j]) for r, j in zip(*indices[i])}
        for k in range(q):
            y = assigned.get(k, c1 - 1)
            w = 1.0 if y < c1 - 1 else cfg.no_object_weight
            ce = -torch.log_softmax(logits[i, k], -1)[y].item()
            num += w * ce
            den += w
            if k in assigned:
                pos_num += ce
                pos_cnt += 1
    got = crit.loss_cls(outputs["pred_logits"], targets, indices, positive_only=False)
    got_pos = crit.loss_cls(outputs["pred_logits"], targets, indices, positive_only=True)
    assert got.item() == pytest.approx(num / den, rel=1e-5)
    assert got_pos.item() == pytest.approx(pos_num / pos_cnt, rel=1e-5)


def test_positive_only_ignores_unmatched_queries():
    outputs, targets = _batch(4)
    crit = SetCriterion(LossConfig(num_points=256))
    seed = 123
    indices = crit.matcher(outputs, targets, generator=torch.Generator().manual_seed(seed))
    changed = outputs["pred_logits"].detach().clone()
    for i, (rows, _) in enumerate(indices):
        unmatched = [k for k in range(changed.shape[1]) if k not in set(rows.tolist())]
        changed[i, unmatched, -1] += 20.0  # make unmatched queries confident no-object: a worse match
    out2 = dict(outputs, pred_logits=changed.requires_grad_())
    indices2 = crit.matcher(out2, targets, generator=torch.Generator().manual_seed(seed))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(indices, indices2))

    def run(out, positive_only):
        return crit(out, targets, positive_only=positive_only, generator=torch.Generator().manual_seed(seed))

    pos1, pos2 = run(outputs, True), run(out2, True)
    for k in ("loss_cls", "loss_bce", "loss_dice"):
        assert pos1[k].item() == pytest.approx(pos2[k].item(), rel=1e-6, abs=1e-7)
    full1, full2 = run(outputs, False), run(out2, False)
    assert abs(full1["loss_cls"].item() - full2["loss_cls"].item()) > 1e-2
    # gradient: unmatched queries receive no classification gradient in positive-only mode
    pos1["loss_cls"].backward()
    grad = outputs["pred_logits"].grad
    for i, (rows, _) in enumerate(indices):
        unmatched = [k for k in range(grad.shape[1]) if k not in set(rows.tolist())]
        assert grad[i, unmatched].abs().max().item() == 0.0
        assert grad[i, rows].abs().max().item() > 0.0


def test_deep_supervision_keys_and_values():
    outputs, targets = _batch(5)
    aux = [{"pred_logits": torch.randn_like(outputs["pred_logits"]),
            "pred_masks": torch.randn_like(outputs["pred_masks"])} for _ in range(2)]
    outputs["aux_outputs"] = aux
    cfg = LossConfig(num_points=64)
    crit = SetCriterion(cfg)
    losses = crit(outputs, targets, generator=torch.Generator().manual_seed(0))
    base = ["loss_cls", "loss_bce", "loss_dice"]
    assert set(losses) == set(base) | {f"{k}_{i}" for k in base for i in range(2)}
    # replay: last layer first, then each aux layer, sharing one generator and the normaliser
    g = torch.Generator().manual_seed(0)
    num_masks = float(sum(len(t["labels"]) for t in targets))
    expected = crit.layer_losses(outputs, targets, False, num_masks, g)
    for i in range(2):
        expected.update({f"{k}_{i}": v for k, v in crit.layer_losses(aux[i], targets, False, num_masks, g).items()})
    for k, v in expected.items():
        assert losses[k].item() == pytest.approx(v.item(), rel=1e-6)
    no_deep = SetCriterion(LossConfig(num_points=64, deep_supervision=False))(outputs, targets)
    assert set(no_deep) == set(base)


def test_num_masks_normaliser_and_empty_targets():
    outputs, targets = _batch(6)
    crit = SetCriterion(LossConfig(num_points=64))
    a = crit(outputs, targets, generator=torch.Generator().manual_seed(0))
    b = crit(outputs, targets, num_masks=10.0, generator=torch.Generator().manual_seed(0))
    assert a["loss_bce"].item() * 5 / 10 == pytest.approx(b["loss_bce"].item(), rel=1e-6)  # 5 masks by default
    assert a["loss_cls"].item() == pytest.approx(b["loss_cls"].item())
    empty = [{"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 32, 32, dtype=torch.bool)}
             for _ in targets]
    for positive_only in (False, True):
        losses = crit(outputs, empty, positive_only=positive_only)
        assert losses["loss_bce"].item() == 0.0 and losses["loss_dice"].item() == 0.0
        total = weighted_total(losses, crit.cfg)
        total.backward()  # graph stays connected even with nothing to match
    # no targets: every query is no-object; the cls loss is the mean CE towards the last class
    expected = -torch.log_softmax(outputs["pred_logits"].detach(), -1)[..., -1].mean()
    assert crit(outputs, empty)["loss_cls"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_weighted_total_is_eq6():
    cfg = LossConfig()
    t = {"loss_cls": torch.tensor(1.0), "loss_bce": torch.tensor(2.0), "loss_dice": torch.tensor(3.0),
         "loss_con": torch.tensor(4.0), "loss_cls_0": torch.tensor(0.5), "loss_dice_11": torch.tensor(0.25)}
    expected = 2 * 1 + 5 * 2 + 5 * 3 + 1 * 4 + 2 * 0.5 + 5 * 0.25
    assert weighted_total(t, cfg).item() == pytest.approx(expected)
    with pytest.raises(KeyError, match="loss_mask"):
        weighted_total({"loss_mask": torch.tensor(1.0)}, cfg)


def test_targets_may_have_any_resolution_and_gradients_flow():
    outputs, targets = _batch(7, m=(2, 3))
    targets[1]["masks"] = F.interpolate(targets[1]["masks"].float()[None], size=(20, 28))[0] > 0.5
    losses = SetCriterion(LossConfig(num_points=64))(outputs, targets, positive_only=False)
    weighted_total(losses, LossConfig()).backward()
    assert outputs["pred_masks"].grad.abs().sum() > 0 and outputs["pred_logits"].grad.abs().sum() > 0


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="contrastive"):
        LossConfig(contrastive="siglip")
    with pytest.raises(ValueError, match="importance_sample_ratio"):
        LossConfig(importance_sample_ratio=2.0)


def test_the_loss_table_names_a_weight_of_the_config_for_every_term():
    """Eq. 6's terms come from one table (LOSS_TERMS): each names its LossConfig weight, which
    weighted_total applies; the trainer logs the same terms (issue #25 item 3)."""
    import dataclasses

    import torch

    from vloss.config import LossConfig
    from vloss.losses import LOSS_TERMS, weighted_total

    cfg = LossConfig()
    fields = {f.name for f in dataclasses.fields(LossConfig)}
    assert set(LOSS_TERMS) == {"loss_cls", "loss_bce", "loss_dice", "loss_con"}
    assert all(field in fields and isinstance(getattr(cfg, field), float) for field in LOSS_TERMS.values())
    ones = {term: torch.tensor(1.0) for term in LOSS_TERMS} | {"loss_dice_0": torch.tensor(1.0)}
    expected = cfg.cls_weight + cfg.bce_weight + 2 * cfg.dice_weight + cfg.con_weight  # Eq. 6 by hand
    assert float(weighted_total(ones, cfg)) == pytest.approx(expected)
