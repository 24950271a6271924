"""Training input: training shards -> augmented batches, with the transforms inside Ray Data.

``task_dataset(root, task, cfg)`` reads a task's Parquet shards and maps every row through its
transform in Ray Data tasks (decode, large-scale jitter or resized crop, mask packing), so the
training loop only collates ready arrays:

* dense rows (panoptic, detection) -> ``image`` [S, S, 3] uint8, ``masks`` bit-packed bytes,
  ``num_masks`` int32, ``labels`` int32 bytes;
* caption rows -> ``image`` [s, s, 3] uint8, ``caption`` string.

``dense_collate`` / ``caption_collate`` turn a numpy batch into the plain tensors and target
dicts the criterion consumes; pass them to ``iter_torch_batches(collate_fn=...)``.
Crowd regions (``iscrowd``) are not targets, as in Mask2Former; they are counted in
``dropped_crowd`` per row so nothing disappears unseen.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vloss.data.masks import decode_rle
from vloss.data.transforms import (large_scale_jitter, normalize_images, pack_masks, pick_caption,
                                   random_resized_crop, unpack_masks)


@dataclass
class InputConfig:
    """Input settings of one run (paper Sec. 4.2: 768 dense, 224 image-text).

    Args:
        dense_size: side of dense training crops.
        caption_size: side of image-text crops.
        lsj_min_scale, lsj_max_scale: large-scale jitter range.
        seed: mixed into every sample's random generator.
    """

    dense_size: int = 768
    caption_size: int = 224
    lsj_min_scale: float = 0.1
    lsj_max_scale: float = 2.0
    seed: int = 0


def _decode_image(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _rng(seed: int, image_id: int) -> np.random.Generator:
    # fresh augmentation every pass: OS entropy mixed with (seed, image id)
    return np.random.default_rng([seed & 0xFFFFFFFF, image_id & 0xFFFFFFFFFFFF,
                                  int.from_bytes(os.urandom(8), "little")])


class DenseTransform:
    """Ray Data row transform for panoptic / detection rows (LSJ to ``size``)."""

    def __init__(self, size: int, min_scale: float, max_scale: float, seed: int) -> None:
        self.size, self.min_scale, self.max_scale, self.seed = size, min_scale, max_scale, seed

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        image = _decode_image(row["image"])
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
        image = random_resized_crop(_decode_image(row["image"]), self.size, rng)
        return {"image_id": int(row["image_id"]), "image": image, "caption": pick_caption(row["captions"], rng)}


def dense_collate(batch: dict[str, np.ndarray]) -> dict[str, Any]:
    """Numpy batch of dense rows -> ``{"images": [B, 3, S, S], "targets": [...], "image_ids"}``."""
    images = np.stack(list(batch["image"])) if batch["image"].dtype == object else batch["image"]
    size = images.shape[1]
    targets = []
    for packed, n, lab in zip(batch["masks"], batch["num_masks"], batch["labels"]):
        n = int(n)
        targets.append({"labels": torch.from_numpy(np.frombuffer(lab, dtype=np.int32).astype(np.int64)),
                        "masks": torch.from_numpy(unpack_masks(packed, n, size, size))})
    return {"images": normalize_images(images), "targets": targets,
            "image_ids": [int(i) for i in batch["image_id"]]}


def caption_collate(batch: dict[str, np.ndarray]) -> dict[str, Any]:
    """Numpy batch of caption rows -> ``{"images": [B, 3, s, s], "captions": list[str]}``."""
    images = np.stack(list(batch["image"])) if batch["image"].dtype == object else batch["image"]
    return {"images": normalize_images(images), "captions": [str(c) for c in batch["caption"]],
            "image_ids": [int(i) for i in batch["image_id"]]}


def _collate_classes():
    """``iter_torch_batches`` wants collate callables deriving from Ray's NumpyBatchCollateFn."""
    from ray.data.collate_fn import NumpyBatchCollateFn

    class DenseCollate(NumpyBatchCollateFn):
        def __call__(self, batch):
            return dense_collate(batch)

    class CaptionCollate(NumpyBatchCollateFn):
        def __call__(self, batch):
            return caption_collate(batch)

    dense = DenseCollate()
    return {"panoptic": dense, "detection": dense, "captions": CaptionCollate()}


COLLATE = _collate_classes()


def task_dataset(root: str, task: str, cfg: InputConfig, limit: int = 0, num_cpus: float = 0.25):
    """A task's shards as a Ray dataset of transformed rows.

    Args:
        root: shard root (path or URI) written by ``pipelines.train_sources``.
        task: "panoptic", "detection" or "captions".
        cfg: input settings.
        limit: read only the first ``limit`` rows of every pass (0 = all).
        num_cpus: CPUs each transform task reserves (fractional on small machines).
    """
    import ray

    from pipelines.io import locate
    from pipelines.train_shards import task_shard_paths

    loc = locate(root)
    paths = task_shard_paths(loc, task)
    if not paths:
        raise FileNotFoundError(f"no '{task}' shards under {root}/{task} (build them with jobs/train.py "
                                f"--build-shards or pipelines.train_sources.build_training_shards)")
    ds = ray.data.read_parquet(paths, filesystem=loc.fs)
    if limit:
        ds = ds.limit(limit)
    if task == "captions":
        fn = CaptionTransform(cfg.caption_size, cfg.seed)
    else:
        fn = DenseTransform(cfg.dense_size, cfg.lsj_min_scale, cfg.lsj_max_scale, cfg.seed)
    return ds.map(fn, num_cpus=num_cpus)
