"""The run-length joint histogram equals a per-pixel count of (gt id, pred id) pairs."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from vloss.eval.pq_overlap import overlap_histogram
from vloss.eval.pq_synthetic import random_panoptic_pair


def brute_force(gt: np.ndarray, pred: np.ndarray, gt_mask=None, pred_mask=None) -> list[tuple[int, int, int]]:
    """Sorted (gt id, pred id, pixels) by counting pixels one at a time."""
    counts = Counter()
    for g, p in zip(np.asarray(gt).ravel().tolist(), np.asarray(pred).ravel().tolist()):
        if gt_mask is not None:
            g &= gt_mask
        if pred_mask is not None:
            p &= pred_mask
        counts[(g, p)] += 1
    return sorted((g, p, n) for (g, p), n in counts.items())


def as_rows(out) -> list[tuple[int, int, int]]:
    g, p, n = out
    assert g.dtype == p.dtype == n.dtype == np.int64
    return list(zip(g.tolist(), p.tolist(), n.tolist()))


def test_random_panoptic_maps_in_several_dtypes():
    rng = np.random.default_rng(0)
    for _ in range(60):
        h, w = int(rng.integers(1, 30)), int(rng.integers(1, 30))
        gt, _, pred, _ = random_panoptic_pair(rng, h, w)
        expected = brute_force(gt, pred)
        assert as_rows(overlap_histogram(gt, pred)) == expected
        assert as_rows(overlap_histogram(gt.astype(np.uint32), pred.astype(np.uint32))) == expected


def test_noise_large_and_negative_ids_take_the_rank_path():
    rng = np.random.default_rng(1)
    for low, high in ((0, 5), (-3, 3), (2 ** 40, 2 ** 40 + 4), (0, 2 ** 62)):
        gt = rng.integers(low, high, size=(13, 17))
        pred = rng.integers(low, high, size=(13, 17))
        assert as_rows(overlap_histogram(gt, pred)) == brute_force(gt, pred)


def test_masks_ignore_the_top_byte_of_raw_pixels():
    rng = np.random.default_rng(2)
    gt, _, pred, _ = random_panoptic_pair(rng, 20, 25)
    # raw RGBA-like pixels: id + random alpha in the top byte
    raw_g = (gt + (rng.integers(0, 256, gt.shape) << 24)).astype(np.uint32)
    raw_p = (pred + (255 << 24)).astype(np.uint32)
    out = overlap_histogram(raw_g, raw_p, gt_mask=0xFFFFFF, pred_mask=0xFFFFFF)
    assert as_rows(out) == brute_force(gt, pred)
    # only the masked side is masked
    out = overlap_histogram(raw_g, pred, gt_mask=0xFFFFFF)
    assert as_rows(out) == brute_force(gt, pred)


@pytest.mark.parametrize("shape", [(0, 0), (0, 5), (1, 1), (1, 9), (9, 1)])
def test_degenerate_shapes(shape):
    gt = np.arange(int(np.prod(shape))).reshape(shape) % 3
    pred = np.zeros(shape, dtype=np.int64)
    assert as_rows(overlap_histogram(gt, pred)) == brute_force(gt, pred)


def test_pixels_sum_to_the_image_and_pairs_ascend():
    rng = np.random.default_rng(3)
    gt, _, pred, _ = random_panoptic_pair(rng, 48, 64)
    g, p, n = overlap_histogram(gt, pred)
    assert int(n.sum()) == gt.size and (n > 0).all()
    keys = list(zip(g.tolist(), p.tolist()))
    assert keys == sorted(set(keys))


def test_size_mismatch_is_refused():
    with pytest.raises(ValueError, match="differ in size"):
        overlap_histogram(np.zeros((2, 3)), np.zeros((3, 2)))
