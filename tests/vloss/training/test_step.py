"""One training step outside Ray: every amp mode on CPU gives finite losses and gradients."""

from __future__ import annotations

import pytest
import torch

from vloss.config import resolve
from vloss.losses import SetCriterion, weighted_total
from vloss.model import VLOSS
from vloss.training.step import TaskForward, autocast_context, compute_losses


def _step(amp: str) -> tuple[float, float]:
    job = resolve("tiny", ["loss.num_points=128", "model.decoder.num_queries=8"])
    torch.manual_seed(0)
    model = VLOSS(job.model)
    step = TaskForward(model, {"panoptic": ["sky", "red ring", "grass"]}, job.model.text.templates, "clip")
    images = torch.randn(2, 3, 64, 64)
    masks = torch.zeros(2, 2, 64, 64, dtype=torch.bool)
    masks[:, 0, :32] = True
    masks[:, 1, 40:, 10:30] = True
    targets = [{"labels": torch.tensor([0, 1]), "masks": m} for m in masks]
    ctx, scaler = autocast_context(amp, torch.device("cpu"))
    assert scaler is False
    with ctx:
        out = step("panoptic", images)
    if amp == "bf16":
        assert out["pred_masks"].dtype == torch.bfloat16  # autocast really ran
    criterion = SetCriterion(job.loss, generator=torch.Generator().manual_seed(0))
    loss = weighted_total(compute_losses("panoptic", out, {"targets": targets}, job.loss, criterion), job.loss)
    loss.backward()
    grad = sum(float(p.grad.abs().sum()) for p in model.parameters() if p.grad is not None)
    return float(loss.detach()), grad


@pytest.mark.parametrize("amp", ["off", "auto", "bf16"])
def test_amp_modes_train_on_cpu(amp):
    loss, grad = _step(amp)
    assert torch.isfinite(torch.tensor(loss)) and loss > 0
    assert torch.isfinite(torch.tensor(grad)) and grad > 0


def test_bf16_loss_close_to_fp32():
    (l32, _), (l16, _) = _step("off"), _step("bf16")
    assert abs(l16 - l32) / l32 < 0.05


def test_bad_amp_modes_are_clear_errors():
    with pytest.raises(ValueError, match="needs a GPU"):
        autocast_context("fp16", torch.device("cpu"))
    with pytest.raises(ValueError, match="train.amp must be"):
        autocast_context("half", torch.device("cpu"))
