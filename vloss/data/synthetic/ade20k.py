"""ADE20K panoptic val of the synthetic world, in the layout of the usual ADE20K-150 conversion.

Its own 0-based category ids (stuff and things interleaved), string image ids
(``"ADE_val_00000001"``) and no COCO url fields. Every image forces one unseen class
(thing or stuff), cycling through them, so that open-vocabulary evaluation has them all.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vloss.data.synthetic.panoptic import panoptic_counts, thing_and_stuff_names, write_panoptic_split
from vloss.data.synthetic.scenes import SceneRecipe, ade_categories, draw_recipe
from vloss.data.synthetic.vocab import WorldVocabulary


def _image_entry(i: int, h: int, w: int) -> dict:
    """The ADE ``images`` entry of image ``i``: a string id that is also the file stem."""
    image_id = f"ADE_val_{i + 1:08d}"
    return {"id": image_id, "file_name": f"{image_id}.jpg", "height": h, "width": w}


def write_ade20k(root: Path, seed: int, n: int, vocab: WorldVocabulary, paths: dict[str, str]) -> dict:
    """Write the ADE20K panoptic val split.

    Args:
        root: world root.
        seed: world seed.
        n: val images.
        vocab: the world vocabulary.
        paths: the ``ade20k_panoptic`` entry of the layout (paths relative to ``root``).

    Returns:
        ``counts`` (``ade20k_val``) and ``vocab_size`` (number of ADE categories).
    """
    cats = ade_categories(vocab)
    things, stuff = thing_and_stuff_names(cats)
    names = {c["name"] for c in cats}
    unseen = [c for c in vocab.unseen_things + vocab.unseen_stuff if c in names]

    def draw(rng: np.random.Generator, i: int) -> SceneRecipe:
        return draw_recipe(rng, things, stuff, (2, 6), [unseen[i % len(unseen)]], 0.0, 0.5, zipf=0.6)

    data = write_panoptic_split(root, "ade20k_val", seed, n, cats, paths["val_images"], paths["val_png_dir"],
                                paths["val_json"], draw, _image_entry)
    return {"counts": {"ade20k_val": panoptic_counts(data)}, "vocab_size": len(cats)}
