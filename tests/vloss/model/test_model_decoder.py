"""Decoder attention masks, global query, sine positions and the open-vocabulary classifier."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vloss.config import DecoderConfig
from vloss.model.classifier import OpenVocabClassifier
from vloss.model.decoder import MaskedAttentionDecoder
from vloss.model.layers import sine_position_2d


def small_decoder(**kw) -> MaskedAttentionDecoder:
    cfg = DecoderConfig(hidden_dim=32, num_queries=5, num_heads=4, ffn_dim=64, **{"num_layers": 3, **kw})
    return MaskedAttentionDecoder(cfg, in_dim=32, mask_dim=16, text_dim=24).eval()


def inputs(b: int = 2) -> tuple[list[torch.Tensor], torch.Tensor]:
    feats = [torch.randn(b, 32, 2, 3), torch.randn(b, 32, 4, 6), torch.randn(b, 32, 8, 12)]
    return feats, torch.randn(b, 16, 16, 24)


def test_attention_mask_from_previous_masks_and_global_row_open() -> None:
    torch.manual_seed(0)
    dec = small_decoder()
    queries = torch.randn(2, 6, 32)  # 5 object queries + the global query
    mask_features = torch.randn(2, 16, 16, 24)
    pred, blocked = dec.heads(queries, mask_features, (4, 6))
    assert blocked.shape == (2 * 4, 6, 24)
    small = F.interpolate(pred["pred_masks"], size=(4, 6), mode="bilinear", align_corners=False)
    expected = (small.sigmoid() < 0.5).flatten(2)  # [B, N, 24]
    for b in range(2):
        for h in range(4):
            row = blocked[b * 4 + h]
            assert torch.equal(row[:5], expected[b])
            assert not row[5].any()  # the global query attends everywhere
    assert pred["img_embed"].shape == (2, 24)


def test_fully_masked_rows_attend_everywhere() -> None:
    """Threshold 2 blocks every pixel; the all-masked fix must then equal no masking at all."""
    torch.manual_seed(0)
    blocked_all = small_decoder(mask_threshold=2.0)
    open_all = small_decoder(mask_threshold=-1.0)
    open_all.load_state_dict(blocked_all.state_dict())
    feats, mf = inputs()
    with torch.no_grad():
        a, b = blocked_all(feats, mf), open_all(feats, mf)
    assert len(a) == 3 + 1
    for pa, pb in zip(a, b):
        assert torch.isfinite(pa["pred_masks"]).all()
        torch.testing.assert_close(pa["pred_masks"], pb["pred_masks"])
        torch.testing.assert_close(pa["img_embed"], pb["img_embed"])


def test_masking_changes_the_result() -> None:
    """Guard for the test above: with a normal threshold the masks do matter."""
    torch.manual_seed(0)
    masked = small_decoder()
    open_all = small_decoder(mask_threshold=-1.0)
    open_all.load_state_dict(masked.state_dict())
    feats, mf = inputs()
    with torch.no_grad():
        assert not torch.allclose(masked(feats, mf)[-1]["pred_masks"], open_all(feats, mf)[-1]["pred_masks"])


def test_global_query_starts_as_average_pool_of_f0() -> None:
    torch.manual_seed(0)
    dec = small_decoder(num_layers=0)
    feats, mf = inputs()
    with torch.no_grad():
        (pred,) = dec(feats, mf)
        expected = dec.img_proj(dec.norm(feats[0].mean(dim=(2, 3))))
    torch.testing.assert_close(pred["img_embed"], expected)


def test_without_global_query() -> None:
    dec = small_decoder(global_query=False)
    feats, mf = inputs()
    with torch.no_grad():
        out = dec(feats, mf)
    assert all(p["img_embed"] is None for p in out)
    assert out[-1]["pred_masks"].shape == (2, 5, 16, 24)


def detr_sine_reference(h: int, w: int, npf: int) -> torch.Tensor:
    """DETR's PositionEmbeddingSine(normalize=True) written the original way (cumsum over a mask)."""
    not_mask = torch.ones(1, h, w)
    y_embed = not_mask.cumsum(1, dtype=torch.float32)
    x_embed = not_mask.cumsum(2, dtype=torch.float32)
    eps, scale = 1e-6, 2 * math.pi
    y_embed = y_embed / (y_embed[:, -1:, :] + eps) * scale
    x_embed = x_embed / (x_embed[:, :, -1:] + eps) * scale
    dim_t = torch.arange(npf, dtype=torch.float32)
    dim_t = 10000 ** (2 * (dim_t // 2) / npf)
    pos_x = x_embed[:, :, :, None] / dim_t
    pos_y = y_embed[:, :, :, None] / dim_t
    pos_x = torch.stack((pos_x[:, :, :, 0::2].sin(), pos_x[:, :, :, 1::2].cos()), dim=4).flatten(3)
    pos_y = torch.stack((pos_y[:, :, :, 0::2].sin(), pos_y[:, :, :, 1::2].cos()), dim=4).flatten(3)
    return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


def test_sine_positions_match_detr() -> None:
    got = sine_position_2d(2, 5, 7, 64, torch.device("cpu"), torch.float32)
    ref = detr_sine_reference(5, 7, 32)
    assert got.shape == (2, 64, 5, 7)
    torch.testing.assert_close(got[1:], ref)


def test_classifier_formula_and_logit_scale() -> None:
    torch.manual_seed(0)
    clf = OpenVocabClassifier(8, logit_scale_init=1 / 0.07, logit_scale_max=100.0)
    q = torch.randn(2, 3, 8)
    c = torch.randn(4, 8)
    logits = clf(q, c)
    assert logits.shape == (2, 3, 5)
    scale = clf.logit_scale()
    assert math.isclose(scale.item(), 1 / 0.07, rel_tol=1e-5)
    classes = torch.cat([c, clf.void_embed])
    for b in range(2):
        for i in range(3):
            for j in range(5):
                cos = torch.dot(q[b, i], classes[j]) / (q[b, i].norm() * classes[j].norm())
                assert math.isclose(logits[b, i, j].item(), (scale * cos).item(), rel_tol=1e-4, abs_tol=1e-5)
    with torch.no_grad():
        clf.logit_scale.log_scale.fill_(math.log(1000.0))
    assert clf.logit_scale().item() == 100.0
    logits.sum().backward()
    assert clf.void_embed.grad is not None and clf.logit_scale.log_scale.grad is not None
