"""Random panoptic ground truth / prediction pairs, for testing and benchmarking PQ.

Ground truth: random rectangles and ellipses painted over a VOID background, random
thing/stuff categories, some crowd regions. Prediction: the ground truth shifted, with
segments split, relabelled, blanked to VOID and random extra blobs, so every PQ rule
(VOID exclusion, crowd absorption, the 50% VOID rule, class mismatch) is exercised.
Raising ``crowd_prob`` and narrowing ``categories`` gives images with several crowd
segments of one category, where the crowd rules of :mod:`vloss.eval.pq_stats` differ.

Ground-truth segments carry ``area`` (their pixel count), which the COCO panoptic API
reads, so the written files can be scored by it as well.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from vloss.data.masks import id2rgb

# Four things and three stuff classes, COCO-panoptic style records.
SYNTHETIC_CATEGORIES = [
    {"id": 1, "name": "person", "isthing": 1}, {"id": 3, "name": "car", "isthing": 1},
    {"id": 18, "name": "dog", "isthing": 1}, {"id": 44, "name": "bottle", "isthing": 1},
    {"id": 149, "name": "road", "isthing": 0}, {"id": 184, "name": "tree", "isthing": 0},
    {"id": 187, "name": "sky", "isthing": 0},
]


def _paint(ids: np.ndarray, rng: np.random.Generator, value: int) -> None:
    """Paint one random rectangle or ellipse with ``value`` (in place)."""
    h, w = ids.shape
    y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
    dh, dw = int(rng.integers(1, max(2, h // 2))), int(rng.integers(1, max(2, w // 2)))
    if rng.random() < 0.5:
        ids[y0:y0 + dh, x0:x0 + dw] = value
    else:
        yy, xx = np.ogrid[:h, :w]
        inside = ((yy - y0) / max(dh, 1)) ** 2 + ((xx - x0) / max(dw, 1)) ** 2 <= 1.0
        ids[inside] = value


def _new_id(rng: np.random.Generator, used: set[int]) -> int:
    while True:
        v = int(rng.integers(1, 256 ** 3))
        if v not in used:
            used.add(v)
            return v


def random_panoptic_pair(rng: np.random.Generator, height: int, width: int,
                         categories: list[dict] = SYNTHETIC_CATEGORIES, *, crowd_prob: float = 0.2,
                         max_segments: int = 8,
                         ) -> tuple[np.ndarray, list[dict], np.ndarray, list[dict]]:
    """One random (gt_ids, gt_segments, pred_ids, pred_segments) case.

    Args:
        rng: random generator.
        height, width: image size.
        categories: category records (``id``, ``isthing``).
        crowd_prob: probability that a ground-truth segment of a thing category is a crowd.
        max_segments: at most this many shapes are painted into the ground truth (at least 2).

    Returns:
        gt_ids [H, W] int64, gt segments_info (with ``area``), pred_ids [H, W] int64,
        pred segments_info.
    """
    cat_ids = [c["id"] for c in categories]
    things = {c["id"] for c in categories if c.get("isthing")}
    used: set[int] = set()
    gt = np.zeros((height, width), dtype=np.int64)  # [H, W]
    for _ in range(int(rng.integers(2, max_segments + 1))):
        _paint(gt, rng, _new_id(rng, used))
    gt_segments = []
    gt_cat = {}
    for sid, area in zip(*np.unique(gt, return_counts=True)):
        if sid == 0:
            continue
        cat = int(rng.choice(cat_ids))
        crowd = int(cat in things and rng.random() < crowd_prob)
        gt_cat[int(sid)] = cat
        gt_segments.append({"id": int(sid), "category_id": cat, "iscrowd": crowd, "area": int(area)})

    # Prediction: remap ids, shift, split, blank, add blobs, relabel.
    remap = {0: 0}
    for sid in gt_cat:
        remap[sid] = _new_id(rng, used)
    pred = np.vectorize(remap.get, otypes=[np.int64])(gt) if gt.size else gt.copy()
    pred_cat = {remap[s]: c for s, c in gt_cat.items()}
    if rng.random() < 0.7:
        pred = np.roll(pred, (int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), axis=(0, 1))
    for _ in range(int(rng.integers(0, 4))):
        new = _new_id(rng, used)
        _paint(pred, rng, new)
        pred_cat[new] = int(rng.choice(cat_ids))
    if rng.random() < 0.5:
        _paint(pred, rng, 0)
    for sid in list(pred_cat):
        if rng.random() < 0.2:  # split a segment in two by columns
            ys, xs = np.nonzero(pred == sid)
            if len(xs) > 1:
                new = _new_id(rng, used)
                pred[(pred == sid) & (np.arange(width)[None, :] > np.median(xs))] = new
                pred_cat[new] = pred_cat[sid]
    present = set(int(v) for v in np.unique(pred)) - {0}
    pred_segments = []
    for sid in sorted(present):
        cat = pred_cat[sid] if rng.random() > 0.15 else int(rng.choice(cat_ids))
        pred_segments.append({"id": sid, "category_id": cat})
    return gt, gt_segments, pred, pred_segments


def write_synthetic_dataset(root: str | Path, num_images: int, height: int, width: int,
                            seed: int = 0, *, categories: list[dict] = SYNTHETIC_CATEGORIES,
                            crowd_prob: float = 0.2, max_segments: int = 8) -> dict[str, Path]:
    """Write a COCO-panoptic ground truth and prediction of random pairs under ``root``.

    Args:
        root: output folder.
        num_images: number of image pairs.
        height, width: image size.
        seed: random seed.
        categories, crowd_prob, max_segments: as :func:`random_panoptic_pair`.

    Returns:
        ``{"gt_json", "gt_dir", "pred_json", "pred_dir"}`` paths.
    """
    root = Path(root)
    paths = {"gt_json": root / "gt.json", "gt_dir": root / "gt", "pred_json": root / "pred.json",
             "pred_dir": root / "pred"}
    paths["gt_dir"].mkdir(parents=True, exist_ok=True)
    paths["pred_dir"].mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images, gt_anns, pred_anns = [], [], []
    for i in range(num_images):
        gt, gs, pred, ps = random_panoptic_pair(rng, height, width, categories, crowd_prob=crowd_prob,
                                                max_segments=max_segments)
        name = f"{i:06d}.png"
        Image.fromarray(id2rgb(gt)).save(paths["gt_dir"] / name)
        Image.fromarray(id2rgb(pred)).save(paths["pred_dir"] / name)
        images.append({"id": i, "file_name": f"{i:06d}.jpg", "height": height, "width": width})
        gt_anns.append({"image_id": i, "file_name": name, "segments_info": gs})
        pred_anns.append({"image_id": i, "file_name": name, "segments_info": ps})
    paths["gt_json"].write_text(json.dumps({"images": images, "annotations": gt_anns,
                                            "categories": categories}))
    paths["pred_json"].write_text(json.dumps({"annotations": pred_anns}))
    return paths
