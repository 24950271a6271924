"""Writing helpers shared by the dataset writers of the synthetic world.

JPEG images, panoptic PNGs, JSON files, and the blocks every COCO-style JSON of the world
carries: ``info`` (which names the generator version and seed) and ``licenses``, plus the
COCO captions document written by both caption splits.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from vloss.data.masks import id2rgb

GENERATOR_VERSION = 2  # 2: the pretraining corpus

# The ``licenses`` block of every COCO-style JSON of the world.
LICENSES = [{"id": 1, "name": "CC0 (generated)", "url": ""}]


def save_jpeg(path: Path, image: np.ndarray) -> None:
    """Write an RGB image as JPEG (quality 90).

    Args:
        path: output file.
        image: [H, W, 3] uint8 image.
    """
    Image.fromarray(image).save(path, format="JPEG", quality=90)


def save_png(path: Path, ids: np.ndarray) -> None:
    """Write a panoptic segment-id map as a COCO-panoptic RGB PNG.

    Args:
        path: output file.
        ids: [H, W] segment ids (0 = void).
    """
    Image.fromarray(id2rgb(ids)).save(path, format="PNG")


def dump_json(path: Path, obj: dict, indent: int | None = None) -> None:
    """Write ``obj`` as JSON, creating the parent directories.

    Args:
        path: output file.
        obj: the JSON document.
        indent: ``json.dump`` indent (None: one line).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=indent)


def dataset_info(name: str, seed: int) -> dict:
    """The ``info`` block of one split's JSON.

    Args:
        name: split name (``"coco_panoptic_train"``, ...).
        seed: world seed.
    """
    return {"description": f"VLOSS synthetic world: {name}", "version": str(GENERATOR_VERSION),
            "year": 2026, "contributor": "vloss.data.synthetic", "seed": seed}


def captions_json(pairs: list, name: str, seed: int, first_id: int) -> dict:
    """A COCO captions document.

    Args:
        pairs: ``(image entry, captions)`` per image, in image order.
        name: split name recorded in ``info``.
        seed: world seed.
        first_id: id of the first caption; the others follow in order.
    """
    anns = []
    for img, caps in pairs:
        for c in caps:
            anns.append({"id": first_id + len(anns), "image_id": img["id"], "caption": c})
    return {"info": dataset_info(name, seed), "licenses": LICENSES,
            "images": [img for img, _ in pairs], "annotations": anns}
