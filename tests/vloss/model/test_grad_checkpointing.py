"""Activation checkpointing (issue #24 item 7): the same gradients with it on and off, and fewer bytes
kept for the backward pass (counted with autograd's saved-tensor hooks, the allocator-independent
measure of activation memory on CPU)."""

from __future__ import annotations

import pytest
import torch

from tests.vloss.model.conftest import tiny_cfg
from vloss.model import VLOSS


def _step(backbone: bool, decoder: bool) -> tuple[dict[str, torch.Tensor], int]:
    """One forward/backward of the tiny model (drop-path and dropout on, so RNG replay matters);
    returns every parameter's gradient and the bytes saved for backward."""
    cfg = tiny_cfg("model.backbone.drop_path_rate=0.2", "model.decoder.dropout=0.1",
                   f"model.backbone.grad_checkpointing={str(backbone).lower()}",
                   f"model.decoder.grad_checkpointing={str(decoder).lower()}").model
    torch.manual_seed(0)
    model = VLOSS(cfg).train()
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    saved = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[0] += t.numel() * t.element_size()
        return t

    torch.manual_seed(2)  # the forward's random draws (drop-path, dropout)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        cls = model.text.class_embeddings(["cat", "dog"])
        out = model(images, class_embeds=cls)
        loss = out["pred_logits"].logsumexp(-1).mean() + out["pred_masks"].sigmoid().mean()
        loss = loss + sum(a["pred_masks"].sigmoid().mean() for a in out["aux_outputs"])
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, saved[0]


@pytest.mark.parametrize("backbone,decoder", [(True, False), (False, True), (True, True)])
def test_gradients_are_equal_and_fewer_activations_are_kept(backbone: bool, decoder: bool) -> None:
    ref, ref_bytes = _step(False, False)
    got, got_bytes = _step(backbone, decoder)
    assert got.keys() == ref.keys() and len(ref) > 50
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], atol=1e-6, rtol=1e-5, msg=name)
    assert got_bytes < ref_bytes, (got_bytes, ref_bytes)
    print(f"backbone={backbone} decoder={decoder}: {got_bytes / 2**20:.1f} MiB kept for backward "
          f"vs {ref_bytes / 2**20:.1f} MiB ({got_bytes / ref_bytes:.2f}x)")


def test_evaluation_is_unchanged_by_the_switches() -> None:
    torch.manual_seed(0)
    plain = VLOSS(tiny_cfg().model).eval()
    torch.manual_seed(0)
    ckpt = VLOSS(tiny_cfg("model.backbone.grad_checkpointing=true", "model.decoder.grad_checkpointing=true")
                 .model).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ckpt(x)["pred_masks"], plain(x)["pred_masks"])
