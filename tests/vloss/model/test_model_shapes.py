"""Output contract of VLOSS.forward for every preset and encoder kind; batched == per image."""

from __future__ import annotations

import pytest
import torch

from tests.vloss.model.conftest import tiny_cfg
from vloss.config import baseline, paper
from vloss.config_io import apply_overrides
from vloss.model import VLOSS

PAPER_M, BASELINE_M = 156.69e6, 110.97e6  # parameter counts reported in the paper (Sec. 4.2)


def check_contract(out: dict, b: int, h: int, w: int, q: int, dt: int, c: int | None, layers: int,
                   global_query: bool) -> None:
    preds = [out] + out["aux_outputs"]
    assert len(out["aux_outputs"]) == layers  # initial prediction + one per layer, last is `out`
    for p in preds:
        assert p["pred_embeds"].shape == (b, q, dt)
        assert p["pred_masks"].shape == (b, q, h // 4, w // 4)
        if global_query:
            assert p["img_embed"].shape == (b, dt)
        else:
            assert p["img_embed"] is None
        if c is None:
            assert "pred_logits" not in p
        else:
            assert p["pred_logits"].shape == (b, q, c + 1)
        for k, v in p.items():
            if k != "aux_outputs" and v is not None:
                assert torch.isfinite(v).all()


KINDS = ("fpn_style", "fpn", "deform")


@pytest.fixture(scope="module")
def models() -> dict[str, VLOSS]:
    """One tiny model per encoder kind, in eval mode (built once for this module)."""
    torch.manual_seed(0)
    return {kind: VLOSS(tiny_cfg(f"encoder.kind={kind}").model).eval() for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", [(64, 64), (96, 128)])
def test_encoder_kinds_shapes(models: dict[str, VLOSS], kind: str, size: tuple[int, int]) -> None:
    model = models[kind]
    cfg = model.cfg
    cls = model.text.class_embeddings(["cat", "dog", "sky"])
    h, w = size
    with torch.no_grad():
        out = model(torch.randn(2, 3, h, w), class_embeds=cls)
        d = cfg.decoder
        check_contract(out, 2, h, w, d.num_queries, cfg.text.embed_dim, 3, d.num_layers, True)
        feats = model.backbone(torch.randn(1, 3, h, w))
        mask_features, ms = model.encoder(feats)
    assert mask_features.shape == (1, cfg.encoder.mask_dim, h // 4, w // 4)
    assert [tuple(f.shape[-2:]) for f in ms] == [(h // 32, w // 32), (h // 16, w // 16), (h // 8, w // 8)]


def test_without_class_embeds_and_without_global_query() -> None:
    cfg = tiny_cfg("decoder.global_query=false")
    model = VLOSS(cfg.model).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 96))
    d = cfg.model.decoder
    check_contract(out, 1, 64, 96, d.num_queries, cfg.model.text.embed_dim, None, d.num_layers, False)


@pytest.mark.parametrize("kind", KINDS)
def test_batched_equals_per_image(models: dict[str, VLOSS], kind: str) -> None:
    model = models[kind]
    cls = model.text.class_embeddings(["cat", "dog"])
    x = torch.randn(3, 3, 64, 96)
    with torch.no_grad():
        batched = model(x, class_embeds=cls)
        singles = [model(x[i:i + 1], class_embeds=cls) for i in range(3)]
    for key in ("pred_logits", "pred_embeds", "pred_masks", "img_embed"):
        ref = torch.cat([s[key] for s in singles])
        torch.testing.assert_close(batched[key], ref, atol=1e-5, rtol=1e-4)
    for layer in range(len(batched["aux_outputs"])):
        ref = torch.cat([s["aux_outputs"][layer]["pred_masks"] for s in singles])
        torch.testing.assert_close(batched["aux_outputs"][layer]["pred_masks"], ref, atol=1e-5, rtol=1e-4)


def test_training_step_reaches_every_component() -> None:
    model = VLOSS(tiny_cfg().model).train()
    cls = model.text.class_embeddings(["cat", "dog"])
    out = model(torch.randn(2, 3, 64, 64), class_embeds=cls)
    caps = model.encode_captions(["a cat", "two dogs"])
    loss = out["pred_logits"].logsumexp(-1).mean() + out["pred_masks"].sigmoid().mean()
    loss = loss + (out["img_embed"] * caps).sum() * model.logit_scale_img_text()
    loss.backward()
    for name in ("backbone", "encoder", "decoder", "text", "classifier", "logit_scale_img_text"):
        grads = [p.grad for p in getattr(model, name).parameters() if p.requires_grad]
        assert grads and any(g is not None and g.abs().sum() > 0 for g in grads), name


def test_paper_real_architecture_params_and_shapes() -> None:
    model = VLOSS(paper().model).eval()
    total = sum(p.numel() for p in model.parameters())
    assert abs(total - PAPER_M) / PAPER_M < 0.10, total
    counts = model.component_parameters()
    assert counts["total"] == total
    assert counts["backbone"] + counts["encoder"] + counts["decoder"] + counts["text"] + counts["other"] == total
    with torch.no_grad():
        cls = model.text.class_embeddings(["person", "sky"])
        out = model(torch.randn(1, 3, 64, 64), class_embeds=cls)
    check_contract(out, 1, 64, 64, 100, 512, 2, 9, True)


def test_other_timm_backbone_in_the_full_model() -> None:
    cfg = tiny_cfg("backbone.name=resnet18", "backbone.embed_dim=none", "backbone.depths=none",
                   "backbone.num_heads=none", "encoder.kind=fpn")
    model = VLOSS(cfg.model).eval()
    assert model.backbone.channels() == [64, 128, 256, 512]
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 96), class_embeds=model.text.class_embeddings(["cat"]))
    d = cfg.model.decoder
    check_contract(out, 1, 64, 96, d.num_queries, cfg.model.text.embed_dim, 1, d.num_layers, True)


def test_baseline_shapes_with_fewer_layers() -> None:
    cfg = apply_overrides(baseline(), ["text.layers=1", "encoder.num_layers=1", "decoder.num_layers=2"])
    model = VLOSS(cfg.model).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 96), class_embeds=model.class_embeddings(["cat", "sky"]))
    check_contract(out, 1, 64, 96, 100, 512, 2, 2, False)
