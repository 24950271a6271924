"""PQ scored while the predictions stream in, from the id maps the predictor actors return.

The file-based path writes every predicted PNG, then :func:`vloss.eval.pq.pq_compute` reads and
decodes each of them again (decoding is most of the scorer's time). Here each image is scored as
soon as its prediction reaches the driver, from the ``[H, W]`` segment ids the actor already
holds, by a pool of threads running the same per-image scorer
(:func:`vloss.eval.pq.pq_stats_many`): only the ground-truth PNG is decoded, and scoring
overlaps inference. The PNGs are still written (they are outputs people look at and re-score).
The result is the same dict as ``pq_compute`` (checked by the tests on the written files).
"""

from __future__ import annotations

import json
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from vloss.eval.pq import default_workers, pq_stats_many
from vloss.eval.pq_stats import PQStat


class StreamingPQ:
    """Accumulates PQ statistics image by image on a thread pool.

    Args:
        gt_json: the (possibly subset) ground-truth panoptic JSON with ``categories``.
        gt_dir: the folder of its PNGs.
        workers: scoring threads (None: ``min(4, cpus)``).
        crowd_rule: ``"official"`` (COCO panoptic API) or ``"all"``.
    """

    def __init__(self, gt_json: str | Path, gt_dir: str | Path, workers: int | None = None,
                 crowd_rule: str = "official") -> None:
        with open(gt_json) as f:
            data = json.load(f)
        self.categories = {int(c["id"]): c for c in data["categories"]}
        self.gt = {a["image_id"]: a for a in data["annotations"]}
        self.gt_json, self.gt_dir, self.crowd_rule = str(gt_json), Path(gt_dir), crowd_rule
        self.total = PQStat.empty(self.categories)
        self._pool = ThreadPoolExecutor(workers or default_workers(), thread_name_prefix="pq-stream")
        self._pending: list[Future] = []
        self.scored: set[Any] = set()

    def submit(self, image_id: Any, pred_ids: np.ndarray, pred_segments: list[dict]) -> None:
        """Score one image's prediction (``[H, W]`` integer ids, 0 = VOID) in the background.

        Raises:
            KeyError: an image the ground truth does not have (names it).
        """
        if image_id not in self.gt:
            raise KeyError(f"{self.gt_json}: no annotation for predicted image {image_id!r}")
        if image_id in self.scored:
            raise ValueError(f"image {image_id!r} scored twice")
        self.scored.add(image_id)
        ann = self.gt[image_id]
        self._pending.append(self._pool.submit(
            pq_stats_many, [str(self.gt_dir / ann["file_name"])], [ann["segments_info"]], [pred_ids],
            [pred_segments], self.categories, image_ids=[image_id], workers=1, crowd_rule=self.crowd_rule,
            gt_source=self.gt_json, pred_source="<prediction in memory>"))
        if len(self._pending) > 64:  # merge finished ones: bounded memory for the id maps in flight
            self._drain(block=False)
            while len(self._pending) > 64:
                self.total += self._pending.pop(0).result()

    def _drain(self, block: bool) -> None:
        keep = []
        for fut in self._pending:
            if block or fut.done():
                self.total += fut.result()
            else:
                keep.append(fut)
        self._pending = keep

    def summary(self) -> dict:
        """Waits for every image, then the ``pq_compute``-style metrics dict.

        Raises:
            ValueError: a ground-truth image that was never scored.
        """
        try:
            self._drain(block=True)
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
        missing = set(self.gt) - self.scored
        if missing:
            raise ValueError(f"{len(missing)} ground-truth images were not scored (e.g. {sorted(missing)[:3]})")
        return self.total.summary(self.categories)

    def close(self) -> None:
        """Stop scoring (on an error elsewhere)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
