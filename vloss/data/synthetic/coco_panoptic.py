"""COCO panoptic train and val of the synthetic world, and the COCO captions of its train images.

Image ids are 100001.. (train) and 200001.. (val), file names their 12-digit form, as
COCO names them. Every image forces one thing and one stuff class, cycling through the
vocabulary, so that each seen class appears; some images get a crowd segment or void blobs.
The train images are also the captioned images (``captions_train2017.json``), as in COCO.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vloss.data.synthetic.files import captions_json, dump_json
from vloss.data.synthetic.panoptic import ImageEntry, panoptic_counts, thing_and_stuff_names, write_panoptic_split
from vloss.data.synthetic.scenes import ClassCounter, SceneRecipe, draw_recipe, panoptic_categories
from vloss.data.synthetic.vocab import WorldVocabulary


def _image_entry(split: str, id_base: int) -> ImageEntry:
    """COCO ``images`` entries of one split: ids from ``id_base + 1``, 12-digit file names."""
    def entry(i: int, h: int, w: int) -> dict:
        image_id = id_base + i + 1
        stem = f"{image_id:012d}"
        return {"id": image_id, "file_name": f"{stem}.jpg", "height": h, "width": w, "license": 1,
                "coco_url": f"http://images.cocodataset.org/{split}/{stem}.jpg",
                "date_captured": "2026-01-01 00:00:00"}
    return entry


def write_coco_panoptic(root: Path, seed: int, n_train: int, n_val: int, vocab: WorldVocabulary,
                        counter: ClassCounter, paths: dict[str, str]) -> dict:
    """Write COCO panoptic train (with its captions) and val.

    Args:
        root: world root.
        seed: world seed.
        n_train: train images (also the captioned images).
        n_val: val images.
        vocab: the world vocabulary.
        counter: training class counts; every train image's classes are added.
        paths: the ``coco_panoptic`` entry of the layout (paths relative to ``root``).

    Returns:
        ``counts`` per split (``coco_panoptic_train``, ``coco_panoptic_val``) and
        ``vocab_size`` (number of panoptic categories).
    """
    cats = panoptic_categories(vocab)
    things, stuff = thing_and_stuff_names(cats)

    def draw(rng: np.random.Generator, i: int) -> SceneRecipe:
        forced = [things[i % len(things)], stuff[i % len(stuff)]]
        return draw_recipe(rng, things, stuff, (2, 6), forced, 0.12, 0.15)

    captions: list = []
    train = write_panoptic_split(root, "coco_panoptic_train", seed, n_train, cats, paths["train_images"],
                                 paths["train_png_dir"], paths["train_json"], draw,
                                 _image_entry("train2017", 100000), counter, captions)
    dump_json(root / paths["train_captions"], captions_json(captions, "coco_captions_train", seed, 1))
    val = write_panoptic_split(root, "coco_panoptic_val", seed, n_val, cats, paths["val_images"],
                               paths["val_png_dir"], paths["val_json"], draw, _image_entry("val2017", 200000))
    return {
        "counts": {"coco_panoptic_train": {**panoptic_counts(train),
                                           "captions": sum(len(c) for _, c in captions)},
                   "coco_panoptic_val": panoptic_counts(val)},
        "vocab_size": len(cats),
    }
