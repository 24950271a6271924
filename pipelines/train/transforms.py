"""Training transforms, run inside Ray Data tasks: decode, large-scale jitter or resized crop, mask packing.

* dense rows (panoptic, detection) -> ``image`` [S, S, 3] uint8, ``masks`` bit-packed bytes,
  ``num_masks`` int32, ``labels`` int32 bytes;
* caption rows -> ``image`` [s, s, 3] uint8, ``caption`` string.

Every random choice of a sample (jitter scale, crop, flip, the caption picked) comes from one
generator seeded by (run seed, task, pass, image id) and nothing else, so two runs with the same
seed see bit-equal batches and a pass re-run after a resume sees what the first run saw, while
each pass draws a fresh augmentation. Crowd regions (``iscrowd``) are not targets, as in
Mask2Former; they are counted in ``dropped_crowd`` per row so nothing disappears unseen. This
module imports no torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipelines.train.pass_plan import task_code
from vloss.data.images import decode_image_reduced
from vloss.data.masks import decode_rle
from vloss.data.transforms import (
    crop_resize,
    large_scale_jitter,
    lsj_resized_shape,
    pack_masks,
    pick_caption,
    resized_crop_box,
)


def sample_rng(seed: int, task: str, pass_index: int, image_id: int) -> np.random.Generator:
    """The generator of one sample's augmentation: (seed, task, pass, image id) and nothing else."""
    return np.random.default_rng([int(seed), task_code(task), int(pass_index),
                                  int(image_id) & 0xFFFFFFFFFFFF])


def _check_size(row: dict[str, Any], full: tuple[int, int]) -> None:
    """The file's size must be the annotated one the random draws were made for (shards are built
    with that check, so only an altered shard fails here)."""
    if full != (int(row["height"]), int(row["width"])):
        raise ValueError(f"{row.get('dataset', row.get('task', '?'))} image {row['image_id']} "
                         f"({row.get('file_name', '?')}): decoded size {full} differs from the annotated "
                         f"{(int(row['height']), int(row['width']))}")


class DenseTransform:
    """Ray Data row transform for panoptic / detection rows (LSJ to ``size``) of one pass."""

    def __init__(self, size: int, min_scale: float, max_scale: float, seed: int, task: str = "panoptic",
                 pass_index: int = 0) -> None:
        self.size, self.min_scale, self.max_scale, self.seed = size, min_scale, max_scale, seed
        self.task, self.pass_index = task, pass_index

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        h, w = int(row["height"]), int(row["width"])
        rng = sample_rng(self.seed, self.task, self.pass_index, int(row["image_id"]))
        # the jitter's size first, so that a JPEG decodes no larger than it is resized to
        resized = lsj_resized_shape(h, w, self.size, rng, self.min_scale, self.max_scale)
        image, full = decode_image_reduced(row["image"], resized[1], resized[0])
        _check_size(row, full)
        keep = [i for i in row["instances"] if not i["iscrowd"]]
        masks = np.zeros((len(keep), h, w), bool)
        for k, inst in enumerate(keep):
            masks[k] = decode_rle({"size": [h, w], "counts": inst["segmentation"]})
        labels = np.array([i["label"] for i in keep], dtype=np.int64)
        sample = large_scale_jitter(image, masks, labels, self.size, rng, self.min_scale, self.max_scale,
                                    resized=resized)
        return {"image_id": int(row["image_id"]), "image": sample.image,
                "masks": pack_masks(sample.masks), "num_masks": np.int32(len(sample.labels)),
                "labels": sample.labels.astype(np.int32).tobytes(),
                "dropped_crowd": np.int32(len(row["instances"]) - len(keep))}


class CaptionTransform:
    """Ray Data row transform for image-text rows (random resized crop + one caption) of one pass."""

    def __init__(self, size: int, seed: int, pass_index: int = 0) -> None:
        self.size, self.seed, self.pass_index = size, seed, pass_index

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        rng = sample_rng(self.seed, "captions", self.pass_index, int(row["image_id"]))
        h, w = int(row["height"]), int(row["width"])
        box = resized_crop_box(h, w, rng)
        # decode no larger than the crop needs: the crop's side at least `size` after the reduction
        image, full = decode_image_reduced(row["image"], -(-w * self.size // box[3]), -(-h * self.size // box[2]))
        _check_size(row, full)
        image = crop_resize(image, box, full, self.size)
        return {"image_id": int(row["image_id"]), "image": image, "caption": pick_caption(row["captions"], rng)}
