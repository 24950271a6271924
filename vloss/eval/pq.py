"""PQ / SQ / RQ over COCO-panoptic-format files, images scored in parallel.

Input is the COCO panoptic layout: a JSON with ``annotations`` (``image_id``,
``file_name``, ``segments_info``) and ``categories`` (``id``, ``name``, ``isthing``), and
a folder of RGB PNGs whose pixels encode segment ids (``id = R + 256 G + 256^2 B``).
The per-image rules live in :mod:`vloss.eval.pq_stats`.

Workers are started with the ``spawn`` method so the scorer is safe to call from
processes that already run threads (Ray workers, torch).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from PIL import Image

from vloss.data.errors import DataFormatError
from vloss.data.masks import rgb2id
from vloss.eval.pq_stats import PQStat, normalize_categories, pq_stats_single


def default_workers() -> int:
    """``min(4, number of CPUs)``."""
    return max(1, min(4, os.cpu_count() or 1))


def load_json(path: str | Path) -> dict:
    """Read a JSON object, with a DataFormatError naming the file when it is not one."""
    path = Path(path)
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DataFormatError(path, "file not found") from None
    except json.JSONDecodeError as e:
        raise DataFormatError(path, f"not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise DataFormatError(path, "expected a JSON object at the top level")
    return data


def read_panoptic_png(path: str | Path, image_id: Any = None) -> np.ndarray:
    """RGB-encoded panoptic PNG -> [H, W] int64 segment ids.

    Args:
        path: the PNG file.
        image_id: used in error messages.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "panoptic PNG not found", field="file_name", record=f"image_id={image_id}")
    with Image.open(path) as im:
        if im.mode not in ("RGB", "RGBA"):
            raise DataFormatError(path, f"panoptic PNG must be RGB, got mode {im.mode}",
                                  field="file_name", record=f"image_id={image_id}")
        arr = np.asarray(im.convert("RGB"))  # [H, W, 3] uint8
    return rgb2id(arr)


@dataclass(frozen=True)
class PanopticPair:
    """One image's ground truth and prediction, as files plus their segments_info."""

    image_id: Any
    gt_png: str
    gt_segments: list
    pred_png: str
    pred_segments: list


def _annotations_by_image(data: dict, path: Path) -> dict:
    anns = data.get("annotations")
    if not isinstance(anns, list):
        raise DataFormatError(path, "missing or non-list 'annotations'", field="annotations")
    out: dict = {}
    for k, ann in enumerate(anns):
        for key in ("image_id", "file_name", "segments_info"):
            if key not in ann:
                rec = f"image_id={ann.get('image_id')}" if "image_id" in ann else f"annotations[{k}]"
                raise DataFormatError(path, f"annotation has no '{key}'", field=key, record=rec)
        if not isinstance(ann["segments_info"], list):
            raise DataFormatError(path, "segments_info is not a list", field="segments_info",
                                  record=f"image_id={ann['image_id']}")
        if ann["image_id"] in out:
            raise DataFormatError(path, "image appears in two annotations", field="image_id",
                                  record=f"image_id={ann['image_id']}")
        out[ann["image_id"]] = ann
    return out


def load_panoptic_pairs(gt_json: str | Path, gt_dir: str | Path, pred_json: str | Path,
                        pred_dir: str | Path) -> tuple[list[PanopticPair], dict[int, dict]]:
    """Pair every ground-truth image with its prediction and read the categories.

    Args:
        gt_json, gt_dir: ground-truth panoptic JSON and PNG folder.
        pred_json, pred_dir: predicted panoptic JSON and PNG folder. The prediction
            JSON needs only ``annotations``; categories come from the ground truth.

    Returns:
        (pairs in ground-truth order, categories ``{id: record}``).

    Raises:
        DataFormatError: a ground-truth image without prediction, a prediction for an
            unknown image, duplicate images, missing fields, no categories.
    """
    gt_json, pred_json = Path(gt_json), Path(pred_json)
    gt, pred = load_json(gt_json), load_json(pred_json)
    if not isinstance(gt.get("categories"), list) or not gt["categories"]:
        raise DataFormatError(gt_json, "missing or empty 'categories'", field="categories")
    for k, c in enumerate(gt["categories"]):
        if "id" not in c:
            raise DataFormatError(gt_json, "category has no id", field="id", record=f"categories[{k}]")
    cats = normalize_categories(gt["categories"])
    gt_anns = _annotations_by_image(gt, gt_json)
    pred_anns = _annotations_by_image(pred, pred_json)
    extra = [i for i in pred_anns if i not in gt_anns]
    if extra:
        raise DataFormatError(pred_json, f"predictions for {len(extra)} image(s) not in the ground truth "
                              f"{gt_json}", field="image_id", record=f"image_id={extra[0]}")
    pairs = []
    for image_id, g in gt_anns.items():
        p = pred_anns.get(image_id)
        if p is None:
            raise DataFormatError(pred_json, "no prediction for a ground-truth image", field="annotations",
                                  record=f"image_id={image_id}")
        pairs.append(PanopticPair(image_id, str(Path(gt_dir) / g["file_name"]), g["segments_info"],
                                  str(Path(pred_dir) / p["file_name"]), p["segments_info"]))
    return pairs, cats


# Worker state: set once per process by the pool initializer.
_WORKER: dict = {}


def _init_worker(categories: dict, gt_json: str, pred_json: str) -> None:
    _WORKER.update(categories=categories, gt_json=gt_json, pred_json=pred_json)


def score_pair(pair: PanopticPair, categories: Mapping[int, Mapping], gt_json: str = "<gt json>",
               pred_json: str = "<pred json>") -> PQStat:
    """Read one pair of PNGs and score it with :func:`pq_stats_single`.

    Args:
        pair: the image's files and segments.
        categories: ``{id: record}``.
        gt_json, pred_json: JSON file names for error messages.
    """
    gt_ids = read_panoptic_png(pair.gt_png, pair.image_id)  # [H, W]
    pred_ids = read_panoptic_png(pair.pred_png, pair.image_id)  # [H, W]
    return pq_stats_single(gt_ids, pair.gt_segments, pred_ids, pair.pred_segments, categories,
                           image_id=pair.image_id, gt_source=gt_json, pred_source=pred_json,
                           gt_png=pair.gt_png, pred_png=pair.pred_png)


def _score_in_worker(pair: PanopticPair) -> PQStat:
    return score_pair(pair, _WORKER["categories"], _WORKER["gt_json"], _WORKER["pred_json"])


def accumulate_pq(pairs: list[PanopticPair], categories: Mapping[int, Mapping], *,
                  workers: int | None = None, gt_json: str = "<gt json>", pred_json: str = "<pred json>") -> PQStat:
    """Score ``pairs`` (in a process pool when ``workers > 1``) and merge their stats.

    Args:
        pairs: images to score.
        categories: ``{id: record}``.
        workers: processes; ``None`` -> :func:`default_workers`; 1 scores in this process.
        gt_json, pred_json: JSON file names for error messages.
    """
    categories = normalize_categories(categories)
    workers = default_workers() if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    total = PQStat.empty(categories)
    workers = min(workers, max(1, len(pairs)))
    if workers == 1:
        for pair in pairs:
            total += score_pair(pair, categories, gt_json, pred_json)
        return total
    chunksize = max(1, len(pairs) // (workers * 4))
    # concurrent.futures rather than multiprocessing.Pool: a worker that dies raises
    # BrokenProcessPool here instead of being silently respawned forever.
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                             initargs=(categories, gt_json, pred_json)) as pool:
        for stat in pool.map(_score_in_worker, pairs, chunksize=chunksize):
            total += stat
    return total


def pq_compute(gt_json: str | Path, gt_dir: str | Path, pred_json: str | Path, pred_dir: str | Path,
               workers: int | None = None) -> dict:
    """PQ of a prediction folder against COCO-panoptic ground truth.

    Args:
        gt_json: ground-truth panoptic JSON (with ``categories``).
        gt_dir: folder of ground-truth PNGs.
        pred_json: predicted panoptic JSON (``annotations`` for every ground-truth image).
        pred_dir: folder of predicted PNGs.
        workers: processes (default ``min(4, cpus)``).

    Returns:
        ``{"All"|"Things"|"Stuff": {"pq","sq","rq","n"}, "per_class": {name: {"pq","sq",
        "rq","tp","fp","fn"}}}`` with values in [0, 1] (``None`` for an empty group).
    """
    pairs, cats = load_panoptic_pairs(gt_json, gt_dir, pred_json, pred_dir)
    stat = accumulate_pq(pairs, cats, workers=workers, gt_json=str(gt_json), pred_json=str(pred_json))
    return stat.summary(cats)
