"""The joint histogram of one image: pixels shared by every (ground-truth id, predicted id) pair.

This is the only pass of the PQ scorer over pixels. Panoptic maps are piecewise constant,
so the pixels are first collapsed, in row-major order, into runs along which neither the
ground-truth id nor the predicted id changes: two comparisons and one ``flatnonzero`` over
``H * W`` values. Everything after that (sorting the runs by their (gt id, pred id) key,
summing run lengths) works on the ``R`` runs, typically a few thousand for a 640x480 image,
instead of sorting ``H * W`` 64-bit pair keys as the COCO panoptic API does. The result is
exact for any input; only the speed depends on how piecewise constant the maps are (a map
of random ids is a run per pixel and costs about as much as a full sort).
"""

from __future__ import annotations

import numpy as np


def overlap_histogram(gt_ids: np.ndarray, pred_ids: np.ndarray, *, gt_mask: int | None = None,
                      pred_mask: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel count of every (ground-truth id, predicted id) pair that shares a pixel.

    Args:
        gt_ids: [H, W] integer ground-truth segment ids (any integer dtype, e.g. uint32
            from a PNG or int64 from memory).
        pred_ids: [H, W] integer predicted segment ids, same shape as ``gt_ids``.
        gt_mask, pred_mask: when given, a map's ids are ``value & mask``: for raw 32-bit
            PNG pixels whose top byte is padding or alpha (mask ``0xFFFFFF``), so that
            they need no masked copy. Only run values are masked.

    Returns:
        ``(gt_id, pred_id, pixels)``, three [K] int64 arrays over the K distinct pairs,
        sorted by ``(gt_id, pred_id)`` ascending; ``pixels`` sums to ``H * W``.
    """
    if np.shape(gt_ids) != np.shape(pred_ids):
        raise ValueError(f"id maps differ in size: {np.shape(gt_ids)} vs {np.shape(pred_ids)}")
    g = np.ascontiguousarray(gt_ids).reshape(-1)  # [N]
    p = np.ascontiguousarray(pred_ids).reshape(-1)  # [N]
    n = g.size
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy(), empty.copy()

    # Run starts: pixel 0 and every pixel where the gt id or the pred id differs from the previous one.
    change = np.not_equal(g[1:], g[:-1])  # [N-1]
    change |= np.not_equal(p[1:], p[:-1])
    starts = np.empty(int(np.count_nonzero(change)) + 1, dtype=np.intp)  # [R]
    starts[0] = 0
    starts[1:] = np.flatnonzero(change)
    starts[1:] += 1
    lengths = np.diff(starts, append=n).astype(np.int64)  # [R]
    run_g = g[starts].astype(np.int64, copy=False)  # [R]
    run_p = p[starts].astype(np.int64, copy=False)  # [R]
    if gt_mask is not None:
        run_g &= gt_mask
    if pred_mask is not None:
        run_p &= pred_mask

    # One int64 key per run that orders the runs by (gt id, pred id): the ids themselves
    # when both fit in 31 bits (always for PNG ids, < 2^24), else their ranks.
    lo = min(int(run_g.min()), int(run_p.min()))
    hi = max(int(run_g.max()), int(run_p.max()))
    if lo >= 0 and hi < 2 ** 31:
        key = (run_g << 32) | run_p  # [R]
        order = np.argsort(key)
        key = key[order]
    else:
        g_vals, g_rank = np.unique(run_g, return_inverse=True)  # [Ug], [R]
        p_vals, p_rank = np.unique(run_p, return_inverse=True)  # [Up], [R]
        key = g_rank.astype(np.int64) * p_vals.size + p_rank  # [R]
        order = np.argsort(key)
        key = key[order]
    new = key[1:] != key[:-1]
    first = np.empty(int(np.count_nonzero(new)) + 1, dtype=np.intp)  # [K] first run of each pair
    first[0] = 0
    first[1:] = np.flatnonzero(new)
    first[1:] += 1
    pixels = np.add.reduceat(lengths[order], first)  # [K]
    pair = key[first]  # [K]
    if lo >= 0 and hi < 2 ** 31:
        return pair >> 32, pair & 0xFFFFFFFF, pixels
    return g_vals[pair // p_vals.size], p_vals[pair % p_vals.size], pixels
