"""Image-text pairs of the synthetic world: images with captions only, over the whole vocabulary.

Every class of the world, unseen ones included, is shown and named: image ``i`` forces
class ``i`` of the vocabulary (things, then stuff), cycling. This is what teaches the
words of the unseen classes without annotating them.
"""

from __future__ import annotations

from pathlib import Path

from vloss.data.synthetic.files import captions_json, dump_json, save_jpeg
from vloss.data.synthetic.scenes import compose, draw_recipe, image_rng, make_captions, present_classes
from vloss.data.synthetic.vocab import WorldVocabulary


def write_image_text(root: Path, seed: int, n: int, vocab: WorldVocabulary, paths: dict[str, str]) -> dict:
    """Write the image-text images and their COCO-format captions.

    Args:
        root: world root.
        seed: world seed.
        n: images.
        vocab: the world vocabulary.
        paths: the ``image_text`` entry of the layout (paths relative to ``root``).

    Returns:
        ``counts`` (``image_text``) and ``classes``: the sorted names of the classes its
        images show (and hence its captions mention).
    """
    (root / paths["images"]).mkdir(parents=True, exist_ok=True)
    every = list(vocab.all_things) + list(vocab.all_stuff)
    pairs, mentioned = [], set()
    for i in range(n):
        rng = image_rng(seed, "image_text", i)
        recipe = draw_recipe(rng, vocab.all_things, vocab.all_stuff, (1, 5), [every[i % len(every)]], zipf=0.3)
        scene = compose(rng, recipe)
        image_id = 300000 + i + 1
        h, w = scene.label.shape
        img = {"id": image_id, "file_name": f"{image_id:012d}.jpg", "height": h, "width": w, "license": 1}
        save_jpeg(root / paths["images"] / img["file_name"], scene.image)
        pairs.append((img, make_captions(rng, scene)))
        mentioned.update(present_classes(scene))
    dump_json(root / paths["captions"], captions_json(pairs, "image_text", seed, 1))
    return {"counts": {"image_text": {"images": len(pairs), "captions": sum(len(c) for _, c in pairs)}},
            "classes": sorted(mentioned)}
