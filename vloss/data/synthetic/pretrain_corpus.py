"""The pretraining corpus of the synthetic world: its miniature of CLIP's web image-text pairs.

The paper starts VLOSS from towers pretrained elsewhere: an ImageNet Swin-T and a CLIP text
encoder (Sec. 4.1). In the synthetic world that role is played by this split, which only
``jobs/pretrain.py`` reads: images with captions (COCO captions format), separate from the
``image_text`` split VLOSS trains L_con on. Every class of the world, unseen ones included,
is shown and named in words (image ``i`` forces class ``i`` of the vocabulary, cycling);
nothing here is a mask or a box, so no class becomes annotated by it.

The images are object-centred, as ImageNet's and most web photos' are: a scene of 1-2 things
is cropped to a square around its forced thing (1.6-2.4 times the thing's extent), and the
captions name only what the crop shows (a thing with at least 30% of its area inside, a stuff
region covering at least 8% of the crop). Measured on the demo world, whole scenes squashed to
the pretraining resolution left things at 8-15 px, where the towers learnt colours but not
shapes ("red circle" and "red cross" at text cosine 0.998).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vloss.data.synthetic.files import captions_json, dump_json, save_jpeg
from vloss.data.synthetic.render import Scene
from vloss.data.synthetic.scenes import compose, draw_recipe, image_rng, make_captions, present_classes
from vloss.data.synthetic.vocab import WorldVocabulary

FIRST_IMAGE_ID = 400001
THING_KEPT = 0.3  # a thing is shown (and named) when this share of its area lies inside the crop
STUFF_KEPT = 0.08  # a stuff region when it covers this share of the crop


def centre_crop(rng: np.random.Generator, scene: Scene, name: str) -> Scene:
    """The scene cropped to a square around its first thing called ``name`` (the whole scene when
    ``name`` is not a thing of it), keeping the segments the crop shows (see the module docstring).

    Args:
        rng: the image's generator.
        scene: the composed scene.
        name: the class to centre on.

    Returns:
        A scene whose label, image and segments are those of the crop (dropped segments read as void).
    """
    target = next((seg for seg in scene.segments if seg.isthing and seg.name == name), None)
    if target is None:
        return scene
    ys, xs = np.nonzero(scene.label == target.index)
    h, w = scene.label.shape
    extent = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
    side = int(min(h, w, max(24, round(extent * rng.uniform(1.6, 2.4)))))
    cy = (ys.min() + ys.max()) / 2 + rng.uniform(-0.15, 0.15) * side
    cx = (xs.min() + xs.max()) / 2 + rng.uniform(-0.15, 0.15) * side
    y0 = int(np.clip(round(cy - side / 2), 0, h - side))
    x0 = int(np.clip(round(cx - side / 2), 0, w - side))
    label = scene.label[y0:y0 + side, x0:x0 + side]
    full = np.bincount(scene.label.ravel(), minlength=max(s.index for s in scene.segments) + 1)
    inside = np.bincount(label.ravel(), minlength=len(full))
    kept = [seg for seg in scene.segments
            if (seg.isthing and inside[seg.index] >= THING_KEPT * full[seg.index])
            or (not seg.isthing and inside[seg.index] >= STUFF_KEPT * label.size)]
    keep = np.zeros(len(full), dtype=bool)
    keep[[seg.index for seg in kept]] = True
    return Scene(label=np.where(keep[label], label, 0), segments=kept,
                 image=np.ascontiguousarray(scene.image[y0:y0 + side, x0:x0 + side]))


def write_pretrain_corpus(root: Path, seed: int, n: int, vocab: WorldVocabulary, paths: dict[str, str]) -> dict:
    """Write the pretraining images and their COCO-format captions.

    Args:
        root: world root.
        seed: world seed.
        n: images.
        vocab: the world vocabulary.
        paths: the ``pretrain_corpus`` entry of the layout (paths relative to ``root``).

    Returns:
        ``counts`` (``pretrain_corpus``) and ``classes``: the sorted names of the classes its
        images show and its captions name.
    """
    (root / paths["images"]).mkdir(parents=True, exist_ok=True)
    every = list(vocab.all_things) + list(vocab.all_stuff)
    pairs, mentioned = [], set()
    for i in range(n):
        rng = image_rng(seed, "pretrain_corpus", i)
        recipe = draw_recipe(rng, vocab.all_things, vocab.all_stuff, (0, 1), [every[i % len(every)]], zipf=0.0)
        scene = centre_crop(rng, compose(rng, recipe), every[i % len(every)])
        image_id = FIRST_IMAGE_ID + i
        h, w = scene.label.shape
        img = {"id": image_id, "file_name": f"{image_id:012d}.jpg", "height": h, "width": w, "license": 1}
        save_jpeg(root / paths["images"] / img["file_name"], scene.image)
        pairs.append((img, make_captions(rng, scene)))
        mentioned.update(present_classes(scene))
    dump_json(root / paths["captions"], captions_json(pairs, "pretrain_corpus", seed, 1))
    return {"counts": {"pretrain_corpus": {"images": len(pairs), "captions": sum(len(c) for _, c in pairs)}},
            "classes": sorted(mentioned)}
