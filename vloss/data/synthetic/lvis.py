"""LVIS v1 val of the synthetic world: RLE masks, negative and not-exhaustive category lists.

Categories: 1-based ids in alphabetical order of the underscored names, every thing class
of the world. Every image forces one unseen thing, cycling through them; an image that
shows two or more instances of a class may leave one unannotated and list the class as
not exhaustive, as LVIS allows.

Frequency (r/c/f). LVIS calls a class rare in 1-10 training images, common in 11-100
and frequent above 100, out of ~100k training images. Absolute thresholds would make every
class of a small world rare, and proportional ones (0.01% / 0.1%) would make every class
frequent, so the thresholds are fractions of the number ``N`` of training images
(panoptic train + Objects365), chosen so that a small world's long tail fills all three
buckets: ``rare_max = max(1, floor(0.02 N))``, ``common_max = max(rare_max + 1, floor(0.1 N))``;
rare: count <= rare_max (never-seen classes, count 0, are rare), common: count <= common_max,
frequent: above. ``image_count`` / ``instance_count`` in the LVIS categories are these
training counts; ``world.json`` records N and both thresholds.
"""

from __future__ import annotations

import math
from pathlib import Path

from vloss.data.synthetic.files import LICENSES, dataset_info, dump_json, save_jpeg
from vloss.data.synthetic.scenes import (
    ClassCounter,
    compose,
    draw_recipe,
    image_rng,
    instance_annotations,
    lvis_categories,
    lvis_name,
)
from vloss.data.synthetic.vocab import WorldVocabulary

RARE_FRACTION = 0.02    # LVIS r/c/f thresholds as fractions of the training images
COMMON_FRACTION = 0.1


def frequency_thresholds(n_train: int) -> tuple[int, int]:
    """``(rare_max, common_max)``: the largest training image counts of a rare and a common class.

    Args:
        n_train: training images (COCO panoptic train + Objects365).
    """
    rare_max = max(1, math.floor(RARE_FRACTION * n_train))
    common_max = max(rare_max + 1, math.floor(COMMON_FRACTION * n_train))
    return rare_max, common_max


def write_lvis(root: Path, seed: int, n: int, vocab: WorldVocabulary, training: ClassCounter, n_train: int,
               paths: dict[str, str]) -> dict:
    """Write the LVIS v1 val split, with r/c/f frequencies from the training counts.

    Args:
        root: world root.
        seed: world seed.
        n: val images.
        vocab: the world vocabulary.
        training: class counts of the training splits (complete: written after them).
        n_train: training images (COCO panoptic train + Objects365).
        paths: the ``lvis`` entry of the layout (paths relative to ``root``).

    Returns:
        ``counts`` (``lvis_val``), ``vocab_size`` (number of categories) and ``frequency``:
        the r/c/f rule, ``N``, both thresholds and the number of categories per frequency,
        as ``world.json`` records them.
    """
    rare_max, common_max = frequency_thresholds(n_train)
    cats = lvis_categories(vocab, training.images, training.instances, rare_max, common_max)
    (root / paths["val_images"]).mkdir(parents=True, exist_ok=True)
    by_name = {c["name"]: c["id"] for c in cats}
    cat_ids = {name: by_name[lvis_name(name)] for name in vocab.lvis_things}
    things = tuple(vocab.lvis_things)
    images, anns = [], []
    for i in range(n):
        rng = image_rng(seed, "lvis_val", i)
        forced = [vocab.unseen_things[i % len(vocab.unseen_things)]]
        recipe = draw_recipe(rng, things, vocab.all_stuff, (2, 7), forced, zipf=0.6)
        scene = compose(rng, recipe)
        image_id = 400000 + i + 1
        stem = f"{image_id:012d}"
        save_jpeg(root / paths["val_images"] / f"{stem}.jpg", scene.image)
        inst = instance_annotations(scene, image_id, cat_ids, 0, with_masks=True)
        not_exhaustive = []
        per_cat: dict[int, list[dict]] = {}
        for a in inst:
            per_cat.setdefault(a["category_id"], []).append(a)
        for cid, group in per_cat.items():
            if len(group) >= 2 and rng.random() < 0.3:
                not_exhaustive.append(cid)   # one instance left unannotated, as LVIS allows
                inst.remove(group[-1])
        present = set(per_cat)
        absent = [c["id"] for c in cats if c["id"] not in present]
        neg = sorted(int(v) for v in rng.choice(absent, size=int(rng.integers(1, 5)), replace=False))
        for a in inst:
            del a["iscrowd"]
            a["id"] = len(anns) + 1
            anns.append(a)
        h, w = scene.label.shape
        images.append({"id": image_id, "height": h, "width": w, "license": 1,
                       "coco_url": f"http://images.cocodataset.org/val2017/{stem}.jpg",
                       "flickr_url": "", "date_captured": "2026-01-01 00:00:00",
                       "neg_category_ids": neg, "not_exhaustive_category_ids": sorted(not_exhaustive)})
    dump_json(root / paths["val_json"], {"info": dataset_info("lvis_v1_val", seed), "licenses": LICENSES,
                                         "images": images, "annotations": anns, "categories": cats})
    frequency = {
        "rule": "image count over training images (coco_panoptic_train + objects365_train): "
                "rare <= rare_max (0 included), common <= common_max, frequent above; "
                "rare_max = max(1, floor(0.02 N)), common_max = max(rare_max + 1, floor(0.1 N))",
        "training_images": n_train, "rare_max": rare_max, "common_max": common_max,
        "counts": {k: sum(c["frequency"] == k for c in cats) for k in "rcf"},
    }
    return {"counts": {"lvis_val": {"images": len(images), "instances": len(anns)}},
            "vocab_size": len(cats), "frequency": frequency}
