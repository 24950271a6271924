"""Training transforms, run inside Ray Data tasks: decode, large-scale jitter or resized crop, mask packing.

* dense rows (panoptic, detection) -> ``image`` [S, S, 3] uint8, ``masks`` bit-packed bytes,
  ``num_masks`` int32, ``labels`` int32 bytes;
* caption rows -> ``image`` [s, s, 3] uint8, ``caption`` string.

Crowd regions (``iscrowd``) are not targets, as in Mask2Former; they are counted in
``dropped_crowd`` per row so nothing disappears unseen. This module imports no torch.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from pipelines.common.images import decode_rgb
from vloss.data.masks import decode_rle
from vloss.data.transforms import large_scale_jitter, pack_masks, pick_caption, random_resized_crop


def _rng(seed: int, image_id: int) -> np.random.Generator:
    # fresh augmentation every pass: OS entropy mixed with (seed, image id)
    return np.random.default_rng([seed & 0xFFFFFFFF, image_id & 0xFFFFFFFFFFFF,
                                  int.from_bytes(os.urandom(8), "little")])


class DenseTransform:
    """Ray Data row transform for panoptic / detection rows (LSJ to ``size``)."""

    def __init__(self, size: int, min_scale: float, max_scale: float, seed: int) -> None:
        self.size, self.min_scale, self.max_scale, self.seed = size, min_scale, max_scale, seed

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        image = decode_rgb(row["image"])
        h, w = int(row["height"]), int(row["width"])
        if image.shape[:2] != (h, w):
            raise ValueError(f"{row['dataset']} image {row['image_id']} ({row['file_name']}): decoded size "
                             f"{image.shape[:2]} differs from the annotated {(h, w)}")
        keep = [i for i in row["instances"] if not i["iscrowd"]]
        masks = np.zeros((len(keep), h, w), bool)
        for k, inst in enumerate(keep):
            masks[k] = decode_rle({"size": [h, w], "counts": inst["segmentation"]})
        labels = np.array([i["label"] for i in keep], dtype=np.int64)
        sample = large_scale_jitter(image, masks, labels, self.size, _rng(self.seed, int(row["image_id"])),
                                    self.min_scale, self.max_scale)
        return {"image_id": int(row["image_id"]), "image": sample.image,
                "masks": pack_masks(sample.masks), "num_masks": np.int32(len(sample.labels)),
                "labels": sample.labels.astype(np.int32).tobytes(),
                "dropped_crowd": np.int32(len(row["instances"]) - len(keep))}


class CaptionTransform:
    """Ray Data row transform for image-text rows (random resized crop + one caption)."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed = size, seed

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        rng = _rng(self.seed, int(row["image_id"]))
        image = random_resized_crop(decode_rgb(row["image"]), self.size, rng)
        return {"image_id": int(row["image_id"]), "image": image, "caption": pick_caption(row["captions"], rng)}
