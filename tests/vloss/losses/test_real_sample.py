"""Matcher and panoptic post-processing on the real COCO panoptic sample (published annotations).

Perfect predictions are built from the ground truth of each image: one query per segment with
the segment's class and +-10 mask logits, plus no-object queries. The matcher must recover the
query <-> segment permutation from predictions at a quarter of the resolution, and
``panoptic_inference`` must reproduce the published segmentation, categories and areas.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from vloss.data.masks import rgb2id
from vloss.inference.postprocess import panoptic_inference
from vloss.losses import HungarianMatcher, LossConfig, SetCriterion


def _load(shared_data, index: int):
    root = shared_data / "coco-panoptic-sample"
    meta = json.loads((root / "panoptic_examples.json").read_text())
    cats = sorted(c["id"] for c in meta["categories"])
    contiguous = {cid: i for i, cid in enumerate(cats)}
    is_thing = [bool(next(c for c in meta["categories"] if c["id"] == cid)["isthing"]) for cid in cats]
    ann = meta["annotations"][index]
    ids = rgb2id(np.array(Image.open(root / "panoptic_examples" / ann["file_name"]).convert("RGB")))
    segs = ann["segments_info"]
    masks = torch.from_numpy(np.stack([ids == s["id"] for s in segs]))  # [M, H, W] bool
    labels = torch.tensor([contiguous[s["category_id"]] for s in segs])  # [M]
    return ids, segs, masks, labels, is_thing


def _perfect_logits(labels: torch.Tensor, num_classes: int, num_noobj: int, prob: float = 0.99) -> torch.Tensor:
    m = labels.numel() + num_noobj
    probs = torch.full((m, num_classes + 1), (1 - prob) / num_classes)
    probs[torch.arange(labels.numel()), labels] = prob
    probs[labels.numel():, -1] = prob
    return probs.log()  # [M + extra, C + 1]


@pytest.mark.parametrize("index", [0, 1])
def test_panoptic_inference_reproduces_published_segmentation(shared_data, index):
    ids, segs, masks, labels, is_thing = _load(shared_data, index)
    c = len(is_thing)
    # split the largest stuff segment into two queries (left / right half of its columns)
    stuff = [i for i, s in enumerate(segs) if not is_thing[int(labels[i])]]
    big = max(stuff, key=lambda i: segs[i]["area"])
    cols = torch.nonzero(masks[big]).float()[:, 1]
    split = int(cols.median())
    left, right = masks[big].clone(), masks[big].clone()
    left[:, split:] = False
    right[:, :split] = False
    q_masks = torch.cat([masks[:big], left[None], masks[big + 1:], right[None], torch.zeros_like(masks[:2])])
    q_labels = torch.cat([labels[:big], labels[big:big + 1], labels[big + 1:], labels[big:big + 1]])
    cls = _perfect_logits(q_labels, c, num_noobj=2)
    mask_logits = q_masks.float() * 20 - 10  # [Q, H, W]
    seg, info = panoptic_inference(cls, mask_logits, is_thing)
    assert len(info) == len(segs)  # the split stuff segment is merged back into one
    ours_to_gt = {}
    for s in info:
        gt_ids, counts = np.unique(ids[seg.numpy() == s["id"]], return_counts=True)
        assert len(gt_ids) == 1, "a predicted segment spans several published segments"
        ours_to_gt[s["id"]] = int(gt_ids[0])
    gt_by_id = {s["id"]: s for s in segs}
    for s in info:
        gt = gt_by_id[ours_to_gt[s["id"]]]
        assert s["area"] == gt["area"]
        assert s["isthing"] == is_thing[s["category"]]
        assert int(labels[[g["id"] for g in segs].index(gt["id"])]) == s["category"]
    assert torch.equal(torch.from_numpy(ids == 0), seg == 0)  # void stays void


@pytest.mark.parametrize("index", [0, 1])
def test_matcher_recovers_segments_from_quarter_resolution_predictions(shared_data, index):
    _, segs, masks, labels, is_thing = _load(shared_data, index)
    m, c = len(segs), len(is_thing)
    g = torch.Generator().manual_seed(index)
    perm = torch.randperm(m + 5, generator=g)  # queries in random order, 5 of them no-object
    full = torch.cat([masks.float() * 20 - 10, torch.full((5,) + masks.shape[1:], -10.0)])
    quarter = F.avg_pool2d(full[None], 4)[0]  # [M+5, H/4, W/4] logits at the prediction resolution
    logits = _perfect_logits(labels, c, 5)
    outputs = {"pred_logits": logits[perm][None], "pred_masks": quarter[perm][None]}
    targets = [{"labels": labels, "masks": masks}]
    ((rows, cols),) = HungarianMatcher(num_points=12544)(outputs, targets,
                                                          generator=torch.Generator().manual_seed(0))
    inv = torch.argsort(perm)  # target j sits at query inv[j]
    assert dict(zip(cols.tolist(), rows.tolist())) == {j: int(inv[j]) for j in range(m)}
    # and the losses of these near-perfect predictions are far below those of random ones
    crit = SetCriterion(LossConfig(num_points=4096))
    good = crit(outputs, targets, generator=torch.Generator().manual_seed(0))
    noisy = {"pred_logits": torch.randn_like(outputs["pred_logits"]),
             "pred_masks": torch.randn_like(outputs["pred_masks"])}
    bad = crit(noisy, targets, generator=torch.Generator().manual_seed(0))
    for k in ("loss_cls", "loss_bce", "loss_dice"):
        assert good[k].item() < 0.3 * bad[k].item(), (k, good[k].item(), bad[k].item())
