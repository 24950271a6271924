"""Validation during training: PQ on the panoptic val split with the current weights (paper Sec. 4.1).

The paper trains on COCO panoptic train and "select[s] the best checkpoint on the val set". Every
``train.eval_every`` epochs (and at the end) the rank-0 worker runs :class:`PanopticValidator`
in-process: each val image is resized as evaluation resizes it (shorter side
``input.dense_size``, longer side at most 4x), the network predicts over the panoptic
vocabulary, Mask2Former's panoptic post-processing runs at the original size, and the project's
PQ scorer accumulates the statistics in memory (no prediction files). The thresholds are the
evaluation defaults (0.8 / 0.8), so the selected checkpoint is the one a real evaluation ranks best.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pipelines.common.remote import fetch
from pipelines.common.storage import locate
from vloss.data.coco_panoptic import check_panoptic_png, read_coco_panoptic
from vloss.data.images import read_image
from vloss.data.transforms import resize_for_inference
from vloss.eval.pq_stats import PQStat, pq_stats_single
from vloss.inference.postprocess import forward_padded, panoptic_inference, resize_mask_logits


@dataclass(frozen=True)
class ValSplit:
    """Where the panoptic val split lies (COCO panoptic format).

    Args:
        gt_json: panoptic JSON.
        images: image folder.
        png_dir: panoptic PNG folder.
    """

    gt_json: str
    images: str
    png_dir: str

    def check(self) -> None:
        """Raise FileNotFoundError naming the first missing part (before any training starts)."""
        for name in ("gt_json", "images", "png_dir"):
            if not locate(getattr(self, name)).exists():
                raise FileNotFoundError(f"validation split: {name} {getattr(self, name)} does not exist "
                                        f"(set train.eval_every=0 to train without validation)")

    def local(self) -> "ValSplit":
        """This split with object-store parts mirrored to this node (:func:`pipelines.common.remote.fetch`)."""
        return ValSplit(*(fetch(getattr(self, n), f"validation {n}") for n in ("gt_json", "images", "png_dir")))


class PanopticValidator:
    """Scores a model's panoptic predictions on a val split, in memory.

    Args:
        split: the val split's files.
        size: shorter side of the network input (the run's ``input.dense_size``).
        limit: score only the first ``limit`` images (0 = all).
        batch_size: images per forward pass.
        object_mask_threshold, overlap_threshold: panoptic post-processing thresholds.
    """

    def __init__(self, split: ValSplit, size: int, limit: int = 0, batch_size: int = 2,
                 object_mask_threshold: float = 0.8, overlap_threshold: float = 0.8) -> None:
        split = split.local()
        self.dataset = read_coco_panoptic(split.gt_json, split.images, split.png_dir)
        self.images = self.dataset.images[:limit] if limit else self.dataset.images
        self.size, self.max_size, self.batch_size = size, 4 * size, batch_size
        self.thresholds = (object_mask_threshold, overlap_threshold)
        cats = self.dataset.categories
        self.names = [c.name for c in cats]
        self.category_ids = [c.id for c in cats]
        self.is_thing = [bool(c.isthing) for c in cats]
        self.categories = [{"id": c.id, "name": c.name, "isthing": int(c.isthing)} for c in cats]

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module, device: torch.device | str = "cpu") -> dict[str, Any]:
        """PQ of ``model`` on the split.

        Args:
            model: the (unwrapped) network; it is put in eval mode and restored afterwards.
            device: where it runs.

        Returns:
            ``{"pq", "sq", "rq", "pq_th", "pq_st", "images", "seconds"}`` (fractions in [0, 1]).
        """
        t0 = time.perf_counter()
        was_training = model.training
        model.eval()
        try:
            class_embeds = model.class_embeddings(self.names)  # [C, Dt]
            stat = PQStat.empty(self.categories)
            for start in range(0, len(self.images), self.batch_size):
                stat += self._score_batch(model, self.images[start:start + self.batch_size], class_embeds, device)
        finally:
            model.train(was_training)
        summary = stat.summary(self.categories)

        def get(group: str, key: str) -> float:
            v = summary[group][key]
            return float(v) if v is not None else 0.0

        return {"pq": get("All", "pq"), "sq": get("All", "sq"), "rq": get("All", "rq"),
                "pq_th": get("Things", "pq"), "pq_st": get("Stuff", "pq"), "images": len(self.images),
                "seconds": round(time.perf_counter() - t0, 3)}

    def _score_batch(self, model, records, class_embeds, device) -> PQStat:
        resized, sizes, gts = [], [], []
        for im in records:
            image = read_image(im.image_path)  # [H, W, 3]
            gts.append(check_panoptic_png(im))  # [H, W] segment ids, checked against the JSON
            sizes.append(image.shape[:2])
            resized.append(resize_for_inference(image, self.size, self.max_size))
        out, padded = forward_padded(model, resized, class_embeds, device)
        stat = PQStat.empty(self.categories)
        for k, im in enumerate(records):
            masks = resize_mask_logits(out["pred_masks"][k].float(), sizes[k], padded_size=padded,
                                       valid_size=resized[k].shape[:2])  # [Q, H, W]
            seg_ids, infos = panoptic_inference(out["pred_logits"][k].float(), masks, self.is_thing, *self.thresholds)
            pred_segments = [{"id": s["id"], "category_id": self.category_ids[s["category"]], "iscrowd": 0}
                             for s in infos]
            gt_segments = [{"id": s.id, "category_id": s.category_id, "iscrowd": int(s.iscrowd)} for s in im.segments]
            stat += pq_stats_single(gts[k], gt_segments, seg_ids.cpu().numpy().astype(np.int64), pred_segments,
                                    self.categories, image_id=im.id, gt_source=str(im.png_path),
                                    pred_source="<validation predictions>")
        return stat
