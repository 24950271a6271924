"""Inference post-processing against hand-computed segment maps and direct formulas."""

from __future__ import annotations

import pytest
import torch

from vloss.inference.postprocess import instance_inference, panoptic_inference, resize_mask_logits, semantic_inference

H, W = 4, 6
BIG = 10.0


def _cls(q_probs: list[tuple[int, float]], num_classes: int) -> torch.Tensor:
    """Logits [Q, C+1] whose softmax puts probability p on class c and the rest evenly elsewhere."""
    rows = []
    for c, p in q_probs:
        rest = (1 - p) / num_classes
        probs = torch.full((num_classes + 1,), rest)
        probs[c] = p
        rows.append(probs.log())
    return torch.stack(rows)


def _mask(cols: range, rows: range = range(H)) -> torch.Tensor:
    m = torch.full((H, W), -BIG)
    for r in rows:
        for c in cols:
            m[r, c] = BIG
    return m


def _info(segments):
    return [(s["id"], s["category"], s["isthing"], s["area"]) for s in segments]


def test_panoptic_thresholds_stuff_merging_and_void():
    # vocab: 0 thing, 1 stuff, 2 thing; C = 3, class index 3 = no-object
    is_thing = [True, False, True]
    cls = _cls([(0, 0.95), (1, 0.9), (1, 0.85), (2, 0.7), (3, 0.99)], 3)
    masks = torch.stack([
        _mask(range(0, 2), range(0, 3)),  # q0 thing: cols 0-1, rows 0-2
        _mask(range(2, 4), range(0, 3)),  # q1 stuff: cols 2-3
        _mask(range(4, 6), range(0, 3)),  # q2 same stuff: cols 4-5 -> merged into q1's id
        _mask(range(0, 6)),               # q3 below object_mask_threshold -> dropped
        _mask(range(0, 6)),               # q4 no-object -> dropped
    ])  # row 3 is background for every kept query -> void
    seg, info = panoptic_inference(cls, masks, is_thing)
    expected = torch.tensor([[1, 1, 2, 2, 2, 2]] * 3 + [[0] * 6], dtype=torch.int32)
    assert seg.dtype == torch.int32
    assert torch.equal(seg, expected)
    assert _info(info) == [(1, 0, True, 6), (2, 1, False, 12)]
    assert info[0]["score"] == pytest.approx(0.95, rel=1e-5)
    assert info[1]["score"] == pytest.approx(0.9, rel=1e-5)  # best of the merged stuff queries
    # lowering the object threshold lets q3 (a thing) in; it wins only row 3 (others beat it
    # elsewhere), i.e. 6 of its 24 pixels -> dropped by the overlap rule at 0.8, kept at 0.2
    seg2, info2 = panoptic_inference(cls, masks, is_thing, object_mask_threshold=0.5)
    assert torch.equal(seg2, expected)
    seg3, info3 = panoptic_inference(cls, masks, is_thing, object_mask_threshold=0.5, overlap_threshold=0.2)
    assert torch.equal(seg3, torch.tensor([[1, 1, 2, 2, 2, 2]] * 3 + [[3] * 6], dtype=torch.int32))
    assert _info(info3)[-1] == (3, 2, True, 6)


def test_panoptic_overlap_rule_and_low_mask_probability():
    is_thing = [True, True]
    cls = _cls([(0, 0.95), (1, 0.9)], 2)
    masks = torch.stack([_mask(range(0, 3)), _mask(range(2, 6))])  # 12 px and 16 px, overlap col 2
    # q0 has the higher score and wins col 2; q1 keeps 12/16 = 0.75 of its mask
    seg, info = panoptic_inference(cls, masks, is_thing, overlap_threshold=0.8)
    assert torch.equal(seg, torch.tensor([[1, 1, 1, 0, 0, 0]] * H, dtype=torch.int32))
    assert _info(info) == [(1, 0, True, 12)]
    seg, info = panoptic_inference(cls, masks, is_thing, overlap_threshold=0.7)
    assert torch.equal(seg, torch.tensor([[1, 1, 1, 2, 2, 2]] * H, dtype=torch.int32))
    assert _info(info) == [(1, 0, True, 12), (2, 1, True, 12)]
    # a single query wins every pixel but only pixels with mask prob >= 0.5 enter its segment
    one = torch.full((1, H, W), -1.0)
    one[0, :2] = 1.0
    seg, info = panoptic_inference(_cls([(1, 0.9)], 2), one, is_thing)
    assert torch.equal(seg, torch.tensor([[1] * W] * 2 + [[0] * W] * 2, dtype=torch.int32))
    assert _info(info) == [(1, 1, True, 12)]


def test_panoptic_nothing_kept_and_arbitrary_vocab_size():
    seg, info = panoptic_inference(_cls([(2, 0.99)], 2), _mask(range(W))[None], [True, False])  # no-object
    assert info == [] and int(seg.abs().sum()) == 0
    # two side-by-side segments in vocabularies of 1 and 500 classes (class 499 is stuff)
    for c in (1, 500):
        is_thing = [i % 2 == 0 for i in range(c)]
        cls = _cls([(0, 0.95), (c - 1, 0.9)], c)
        masks = torch.stack([_mask(range(0, 3)), _mask(range(3, 6))])
        seg, info = panoptic_inference(cls, masks, is_thing)
        assert torch.equal(seg, torch.tensor([[1, 1, 1, 2, 2, 2]] * H, dtype=torch.int32))
        assert [s["category"] for s in info] == [0, c - 1]
        assert [s["isthing"] for s in info] == [True, c == 1]
    with pytest.raises(ValueError, match="is_thing has 2 entries"):
        panoptic_inference(_cls([(0, 0.9)], 3), _mask(range(W))[None], [True, False])


def _instance_reference(cls, masks, topk, is_thing=None):
    probs = cls.softmax(-1)[:, :-1]
    cands = []
    for q in range(probs.shape[0]):
        for c in range(probs.shape[1]):
            if is_thing is not None and not is_thing[c]:
                continue
            binary = masks[q] > 0
            inside = masks[q].sigmoid()[binary]
            mask_score = float(inside.sum()) / (float(binary.sum()) + 1e-6)
            cands.append((float(probs[q, c]), q, c, float(probs[q, c]) * mask_score))
    cands.sort(key=lambda t: -t[0])
    return cands[:topk]


@pytest.mark.parametrize("num_classes,topk,thing", [(5, 10, False), (3, 100, False), (40, 25, True), (1, 4, False)])
def test_instance_topk_scores_match_direct_formula(num_classes, topk, thing):
    g = torch.Generator().manual_seed(num_classes)
    q = 7
    cls = torch.randn(q, num_classes + 1, generator=g) * 2
    masks = torch.randn(q, 5, 5, generator=g) * 3
    is_thing = [c % 3 != 1 for c in range(num_classes)] if thing else None
    out = instance_inference(cls, masks, topk=topk, is_thing=is_thing)
    ref = _instance_reference(cls, masks, topk, is_thing)
    assert len(out["scores"]) == len(ref) == min(topk, q * sum(is_thing or [True] * num_classes))
    assert out["labels"].tolist() == [c for _, _, c, _ in ref]
    assert out["query"].tolist() == [qq for _, qq, _, _ in ref]
    assert torch.allclose(out["scores"], torch.tensor([s for *_, s in ref]), rtol=1e-5)
    assert out["masks"].dtype == torch.bool and out["masks"].shape == (len(ref), 5, 5)
    assert torch.equal(out["masks"], masks[out["query"]] > 0)
    if is_thing is not None:
        assert all(is_thing[c] for c in out["labels"].tolist())


def test_semantic_inference_formula():
    g = torch.Generator().manual_seed(0)
    cls, masks = torch.randn(4, 6, generator=g), torch.randn(4, 3, 2, generator=g)
    out = semantic_inference(cls, masks)
    probs = cls.softmax(-1)
    assert out.shape == (5, 3, 2)
    for c in range(5):
        for y in range(3):
            for x in range(2):
                expected = sum(float(probs[q, c]) * float(masks[q, y, x].sigmoid()) for q in range(4))
                assert out[c, y, x].item() == pytest.approx(expected, rel=1e-5)


def test_resize_mask_logits_bilinear_and_padding_crop():
    # align_corners=False: output pixel centres map to input x = (i + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25,
    # clamped at the borders -> 0, 0.25, 0.75, 1 of the way from 0 to 1
    up = resize_mask_logits(torch.tensor([[[0.0, 1.0]]]), (1, 4))
    assert torch.allclose(up, torch.tensor([[[0.0, 0.25, 0.75, 1.0]]]))
    batched = resize_mask_logits(torch.zeros(2, 3, 4, 4), (8, 8))
    assert batched.shape == (2, 3, 8, 8)
    # padded input 4x4 whose valid image is the left 4x2 half: the padding (value 100) is cropped away
    logits = torch.full((1, 2, 2), 100.0)
    logits[:, :, 0] = -3.0
    out = resize_mask_logits(logits, (4, 2), padded_size=(4, 4), valid_size=(4, 2))
    assert out.shape == (1, 4, 2)
    assert torch.allclose(out[0, :, 0], torch.full((4,), -3.0))  # column 0 of the padded 4x4 map
    assert float(out.max()) < 100.0
    with pytest.raises(ValueError, match="together"):
        resize_mask_logits(logits, (4, 4), padded_size=(4, 4))
