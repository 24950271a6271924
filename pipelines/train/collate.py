"""Collate functions: numpy batches of transformed rows -> the tensors and targets the losses consume.

Pass :func:`collate_fns` to ``iter_torch_batches(collate_fn=...)`` (Ray wants callables that
derive from its ``NumpyBatchCollateFn``, so those classes are made on first use, keeping this
module importable without Ray).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch

from vloss.data.transforms import normalize_images, unpack_masks
from vloss.training.tasks import TRAINING_TASKS


def pin(batch: dict[str, Any]) -> dict[str, Any]:
    """The batch's tensors in page-locked memory, so that ``.to(cuda, non_blocking=True)`` copies
    overlap with the step. Runs in Ray's prefetch thread, off the training loop."""
    batch["images"] = batch["images"].pin_memory()
    for t in batch.get("targets", ()):
        for k in t:
            t[k] = t[k].pin_memory()
    return batch


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


@lru_cache(maxsize=2)
def collate_fns(pin_memory: bool = False) -> dict[str, Any]:
    """Per task, the collate callable for ``iter_torch_batches`` (Ray's ``NumpyBatchCollateFn``).

    Args:
        pin_memory: page-lock the batch's tensors (training on a GPU; needs CUDA).
    """
    from ray.data.collate_fn import NumpyBatchCollateFn

    class DenseCollate(NumpyBatchCollateFn):
        def __call__(self, batch):
            out = dense_collate(batch)
            return pin(out) if pin_memory else out

    class CaptionCollate(NumpyBatchCollateFn):
        def __call__(self, batch):
            out = caption_collate(batch)
            return pin(out) if pin_memory else out

    dense, captions = DenseCollate(), CaptionCollate()
    return {name: dense if task.dense else captions for name, task in TRAINING_TASKS.items()}
