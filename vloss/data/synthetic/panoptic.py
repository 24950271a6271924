"""One panoptic split on disk, shared by the COCO-panoptic and ADE20K-panoptic writers.

Per image: a recipe drawn by the dataset, the composed scene, its segment-id map saved as
a COCO-panoptic PNG next to the JPEG, and one ``annotations`` entry with ``segments_info``.
What differs between the datasets (which classes a recipe forces, how images are named and
which fields their entries carry) comes in as the ``draw`` and ``image_entry`` callables.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from vloss.data.synthetic.files import LICENSES, dataset_info, dump_json, save_jpeg, save_png
from vloss.data.synthetic.scenes import ClassCounter, SceneRecipe, compose, image_rng, make_captions, panoptic_segments

# (the image's generator, image index) -> the recipe of that image
RecipeDrawer = Callable[[np.random.Generator, int], SceneRecipe]
# (image index, height, width) -> the image's ``images`` entry; its file_name ends in ".jpg"
ImageEntry = Callable[[int, int, int], dict]


def thing_and_stuff_names(cats: list[dict]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Thing and stuff class names of panoptic categories, in category order.

    Args:
        cats: panoptic categories (with ``isthing``).
    """
    things = tuple(c["name"] for c in cats if c["isthing"])
    stuff = tuple(c["name"] for c in cats if not c["isthing"])
    return things, stuff


def write_panoptic_split(root: Path, name: str, seed: int, n: int, cats: list[dict], image_dir: str,
                         png_dir: str, json_path: str, draw: RecipeDrawer, image_entry: ImageEntry,
                         counter: ClassCounter | None = None, captions: list | None = None) -> dict:
    """Write one panoptic split (images, PNGs, JSON) and return its JSON.

    Args:
        root: world root.
        name: split name; seeds each image's generator and names the split in ``info``.
        seed: world seed.
        n: number of images.
        cats: the dataset's panoptic categories.
        image_dir, png_dir, json_path: where the JPEGs, the PNGs and the JSON go (relative to ``root``).
        draw: the recipe of image ``i``.
        image_entry: the ``images`` entry of image ``i``.
        counter: training class counts to add every image's classes to (training splits only).
        captions: list to append ``(image entry, captions)`` of every image to, or None.
    """
    (root / image_dir).mkdir(parents=True, exist_ok=True)
    (root / png_dir).mkdir(parents=True, exist_ok=True)
    cat_ids = {c["name"]: c["id"] for c in cats}
    colours = {c["name"]: c["color"] for c in cats}
    images, anns = [], []
    for i in range(n):
        rng = image_rng(seed, name, i)
        scene = compose(rng, draw(rng, i))
        ids, infos = panoptic_segments(rng, scene, cat_ids, colours)
        h, w = ids.shape
        img = image_entry(i, h, w)
        stem = img["file_name"].removesuffix(".jpg")
        save_jpeg(root / image_dir / img["file_name"], scene.image)
        save_png(root / png_dir / f"{stem}.png", ids)
        images.append(img)
        anns.append({"image_id": img["id"], "file_name": f"{stem}.png", "segments_info": infos})
        if counter is not None:
            counter.add([s.name for s in scene.segments])
        if captions is not None:
            captions.append((img, make_captions(rng, scene)))
    data = {"info": dataset_info(name, seed), "licenses": LICENSES, "images": images,
            "annotations": anns, "categories": cats}
    dump_json(root / json_path, data)
    return data


def panoptic_counts(data: dict) -> dict[str, int]:
    """Images and segments of a panoptic split's JSON, for the world summary.

    Args:
        data: the split's JSON (as returned by :func:`write_panoptic_split`).
    """
    return {"images": len(data["images"]),
            "segments": sum(len(a["segments_info"]) for a in data["annotations"])}
