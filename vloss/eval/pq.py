"""PQ / SQ / RQ of many images: COCO-panoptic files or id maps already in memory.

Input is the COCO panoptic layout: a JSON with ``annotations`` (``image_id``,
``file_name``, ``segments_info``) and ``categories`` (``id``, ``name``, ``isthing``), and
a folder of RGB PNGs whose pixels encode segment ids (``id = R + 256 G + 256^2 B``); or,
for callers that already hold predictions, [H, W] id arrays plus their ``segments_info``
(:func:`pq_stats_many`). The per-image rules live in :mod:`vloss.eval.pq_stats`.

Images are scored by a pool of workers, each reading, decoding and scoring whole images;
the caller only hands out (image id, files or arrays, segments_info) and adds up per-class
sums. ``executor="thread"`` (default): PNG decoding (Pillow) and the numpy passes over
pixels release the GIL and the Python work per image is a small share of it, so threads
scale with cores without start-up cost or pickling, and are safe in processes that already
run threads (Ray workers, torch). ``executor="process"``: ``spawn``-started processes, for
many cores, where that Python share would cap threads; each costs an interpreter start
(numpy, Pillow imports) and in-memory arrays are pickled to it. Results are merged in image
order, so they depend neither on ``workers`` nor on ``executor``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, Union

import numpy as np

from vloss.data.errors import DataFormatError
from vloss.eval.pq_png import ID_MASK, read_png_pixels
from vloss.eval.pq_png import read_panoptic_png as read_panoptic_png  # re-exported
from vloss.eval.pq_stats import PQStat, check_crowd_rule, normalize_categories, score_image

# One image's ids: [H, W] integer segment ids in memory, or the path of a panoptic PNG.
IdMap = Union[np.ndarray, str, os.PathLike]
EXECUTORS = ("thread", "process")


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
    except (json.JSONDecodeError, UnicodeDecodeError) as e:  # a binary file: name it too
        raise DataFormatError(path, f"not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise DataFormatError(path, "expected a JSON object at the top level")
    return data


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


def _as_ids(ids: IdMap, image_id: Any) -> tuple[np.ndarray, str | None, int | None]:
    """An id map as (array, PNG path or None, id mask or None), decoding it when it is a PNG path."""
    if isinstance(ids, (str, os.PathLike)):
        return read_png_pixels(ids, image_id), str(ids), ID_MASK
    return np.asarray(ids), None, None


def _scorer(cats: dict[int, dict], crowd_rule: str, gt_source: str, pred_source: str) -> Callable:
    """The per-image job of the pool: ``(image_id, gt, gt_segments, pred, pred_segments) -> PQStat``."""
    cat_index = np.asarray(sorted(cats), dtype=np.int64)  # [C]

    def score(job: tuple) -> PQStat:
        image_id, gt, gt_segments, pred, pred_segments = job
        gt_ids, gt_png, gt_mask = _as_ids(gt, image_id)  # [H, W]
        pred_ids, pred_png, pred_mask = _as_ids(pred, image_id)  # [H, W]
        return score_image(gt_ids, gt_segments, pred_ids, pred_segments, cats, cat_index,
                           crowd_rule=crowd_rule, image_id=image_id, gt_source=gt_source,
                           pred_source=pred_source, gt_png=gt_png or gt_source, pred_png=pred_png or pred_source,
                           gt_mask=gt_mask, pred_mask=pred_mask)
    return score


# The scorer of a worker process, set by its initializer.
_PROCESS_SCORER: dict = {}


def _init_process(cats: dict[int, dict], crowd_rule: str, gt_source: str, pred_source: str) -> None:
    _PROCESS_SCORER["score"] = _scorer(cats, crowd_rule, gt_source, pred_source)


def _score_in_process(job: tuple) -> PQStat:
    return _PROCESS_SCORER["score"](job)


def _run_jobs(jobs: list[tuple], cats: dict[int, dict], crowd_rule: str, gt_source: str, pred_source: str,
              workers: int | None, executor: str) -> PQStat:
    """Score ``jobs`` with ``workers`` threads or processes (1: in this thread); merge in job order."""
    workers = default_workers() if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    total = PQStat.empty(cats)
    workers = min(workers, max(1, len(jobs)))
    if workers == 1:
        score = _scorer(cats, crowd_rule, gt_source, pred_source)
        for job in jobs:
            total += score(job)
        return total
    if executor == "thread":
        pool = ThreadPoolExecutor(workers, thread_name_prefix="pq")
        stats = pool.map(_scorer(cats, crowd_rule, gt_source, pred_source), jobs)
    else:
        # concurrent.futures rather than multiprocessing.Pool: a worker that dies raises
        # BrokenProcessPool here instead of being silently respawned forever.
        pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_process,
                                   initargs=(cats, crowd_rule, gt_source, pred_source))
        stats = pool.map(_score_in_process, jobs, chunksize=max(1, len(jobs) // (workers * 4)))
    try:
        for stat in stats:
            total += stat
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # on an error, do not score the rest
    return total


def pq_stats_many(gt_ids: Sequence[IdMap], gt_segments: Sequence[list], pred_ids: Sequence[IdMap],
                  pred_segments: Sequence[list], categories: Mapping[int, Mapping] | Iterable[Mapping], *,
                  image_ids: Sequence[Any] | None = None, workers: int | None = None,
                  executor: str = "thread", crowd_rule: str = "official", gt_source: str = "<ground truth>",
                  pred_source: str = "<prediction>") -> PQStat:
    """PQ sums of many images whose id maps are in memory (or, per entry, PNG paths).

    :func:`vloss.eval.pq_stats.pq_stats_single` over lists, scored in parallel. Nothing is
    written or re-read: pass each prediction's [H, W] segment ids as produced; an entry
    may instead be the path of a panoptic PNG, read (and decoded) by the worker thread.
    Stats of successive calls merge with ``+=``; ``stat.summary(categories)`` gives the
    metrics dict of :func:`pq_compute`.

    Args:
        gt_ids: N ground-truth id maps, each [H_i, W_i] integer ids (0 = VOID) or a PNG path.
        gt_segments: N ground-truth ``segments_info`` lists (``id``, ``category_id``, ``iscrowd``).
        pred_ids: N predicted id maps, each [H_i, W_i] integer ids (0 = VOID) or a PNG path.
        pred_segments: N predicted ``segments_info`` lists (``id``, ``category_id``).
        categories: all categories (list of records or ``{id: record}``).
        image_ids: N ids for error messages (default ``0..N-1``).
        workers: threads or processes (default ``min(4, cpus)``); 1 scores in the calling thread.
        executor: ``"thread"`` or ``"process"`` (see the module docstring).
        crowd_rule: ``"official"`` (COCO panoptic API) or ``"all"``; see :mod:`vloss.eval.pq_stats`.
        gt_source, pred_source: names for error messages about in-memory entries.

    Returns:
        PQStat over all ``categories``.

    Raises:
        ValueError: lists of different lengths, ``workers < 1``, an unknown ``executor`` or
            ``crowd_rule``.
        DataFormatError: malformed input (see :func:`~vloss.eval.pq_stats.pq_stats_single`).
    """
    n = len(gt_ids)
    image_ids = list(range(n)) if image_ids is None else list(image_ids)
    lengths = {len(gt_segments), len(pred_ids), len(pred_segments), len(image_ids)}
    if lengths != {n}:
        raise ValueError(f"gt_ids, gt_segments, pred_ids, pred_segments, image_ids differ in length: "
                         f"{[n, len(gt_segments), len(pred_ids), len(pred_segments), len(image_ids)]}")
    cats = normalize_categories(categories)
    jobs = list(zip(image_ids, gt_ids, gt_segments, pred_ids, pred_segments))
    return _run_jobs(jobs, cats, check_crowd_rule(crowd_rule), gt_source, pred_source, workers, executor)


def score_pair(pair: PanopticPair, categories: Mapping[int, Mapping], gt_json: str = "<gt json>",
               pred_json: str = "<pred json>", *, crowd_rule: str = "official") -> PQStat:
    """Read one pair of PNGs and score it with :func:`~vloss.eval.pq_stats.pq_stats_single`.

    Args:
        pair: the image's files and segments.
        categories: ``{id: record}``.
        gt_json, pred_json: JSON file names for error messages.
        crowd_rule: ``"official"`` or ``"all"``.
    """
    cats = normalize_categories(categories)
    score = _scorer(cats, check_crowd_rule(crowd_rule), gt_json, pred_json)
    return score((pair.image_id, pair.gt_png, pair.gt_segments, pair.pred_png, pair.pred_segments))


def accumulate_pq(pairs: list[PanopticPair], categories: Mapping[int, Mapping], *,
                  workers: int | None = None, gt_json: str = "<gt json>", pred_json: str = "<pred json>",
                  crowd_rule: str = "official", executor: str = "thread") -> PQStat:
    """Score ``pairs`` (PNG files) with ``workers`` threads or processes and merge their stats.

    Args:
        pairs: images to score.
        categories: ``{id: record}``.
        workers: threads or processes; ``None`` -> :func:`default_workers`; 1 scores in this thread.
        gt_json, pred_json: JSON file names for error messages.
        crowd_rule: ``"official"`` or ``"all"``.
        executor: ``"thread"`` or ``"process"``.
    """
    cats = normalize_categories(categories)
    jobs = [(p.image_id, p.gt_png, p.gt_segments, p.pred_png, p.pred_segments) for p in pairs]
    return _run_jobs(jobs, cats, check_crowd_rule(crowd_rule), gt_json, pred_json, workers, executor)


def pq_compute(gt_json: str | Path, gt_dir: str | Path, pred_json: str | Path, pred_dir: str | Path,
               workers: int | None = None, *, crowd_rule: str = "official", executor: str = "thread") -> dict:
    """PQ of a prediction folder against COCO-panoptic ground truth.

    Args:
        gt_json: ground-truth panoptic JSON (with ``categories``).
        gt_dir: folder of ground-truth PNGs.
        pred_json: predicted panoptic JSON (``annotations`` for every ground-truth image).
        pred_dir: folder of predicted PNGs.
        workers: threads or processes (default ``min(4, cpus)``).
        crowd_rule: ``"official"`` (default: the COCO panoptic API's crowd rule) or ``"all"``.
        executor: ``"thread"`` (default) or ``"process"`` (see the module docstring).

    Returns:
        ``{"All"|"Things"|"Stuff": {"pq","sq","rq","n"}, "per_class": {name: {"pq","sq",
        "rq","tp","fp","fn"}}}`` with values in [0, 1] (``None`` for an empty group).
    """
    check_crowd_rule(crowd_rule)
    pairs, cats = load_panoptic_pairs(gt_json, gt_dir, pred_json, pred_dir)
    stat = accumulate_pq(pairs, cats, workers=workers, gt_json=str(gt_json), pred_json=str(pred_json),
                         crowd_rule=crowd_rule, executor=executor)
    return stat.summary(cats)
