"""Objects365 train of the synthetic world: boxes only, with the true masks kept aside.

``annotations/train.json`` holds boxes (``area`` is the box area, no segmentation), as
Objects365 ships; stuff is visible in the images but never annotated. The same instances
with RLE masks go to ``truth/train_masks.json``, kept aside to score pseudo masks against.
Every image forces one Objects365 class, cycling through them.
"""

from __future__ import annotations

from pathlib import Path

from vloss.data.synthetic.files import LICENSES, dataset_info, dump_json, save_jpeg
from vloss.data.synthetic.scenes import (
    ClassCounter,
    compose,
    draw_recipe,
    image_rng,
    instance_annotations,
    objects365_categories,
)
from vloss.data.synthetic.vocab import WorldVocabulary


def write_objects365(root: Path, seed: int, n: int, vocab: WorldVocabulary, counter: ClassCounter,
                     paths: dict[str, str]) -> dict:
    """Write the Objects365 train images, box annotations and hidden truth masks.

    Args:
        root: world root.
        seed: world seed.
        n: train images.
        vocab: the world vocabulary.
        counter: training class counts; every image's annotated things are added.
        paths: the ``objects365`` entry of the layout (paths relative to ``root``).

    Returns:
        ``counts`` (``objects365_train``) and ``vocab_size`` (number of categories).
    """
    cats = objects365_categories(vocab)
    cat_ids = {c["name"]: c["id"] for c in cats}
    (root / paths["train_images"]).mkdir(parents=True, exist_ok=True)
    images, boxes, masks = [], [], []
    for i in range(n):
        rng = image_rng(seed, "objects365_train", i)
        forced = [vocab.objects365_things[i % len(vocab.objects365_things)]]
        recipe = draw_recipe(rng, vocab.objects365_things, vocab.panoptic_stuff, (3, 8), forced, zipf=1.1)
        scene = compose(rng, recipe)
        file_name = f"objects365_v2_{i + 1:08d}.jpg"
        save_jpeg(root / paths["train_images"] / file_name, scene.image)
        h, w = scene.label.shape
        images.append({"id": i + 1, "file_name": file_name, "height": h, "width": w, "license": 1})
        masks += instance_annotations(scene, i + 1, cat_ids, len(masks) + 1, with_masks=True)
        boxes += instance_annotations(scene, i + 1, cat_ids, len(boxes) + 1, with_masks=False)
        counter.add([s.name for s in scene.segments if s.isthing])
    base = {"info": dataset_info("objects365_train", seed), "licenses": LICENSES, "images": images,
            "categories": cats}
    dump_json(root / paths["train_json"], {**base, "annotations": boxes})
    dump_json(root / paths["train_truth_masks"], {**base, "annotations": masks})
    return {"counts": {"objects365_train": {"images": len(images), "boxes": len(boxes)}},
            "vocab_size": len(cats)}
