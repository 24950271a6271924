"""The pretraining corpus is object-centred and its captions name only what each crop shows."""

from __future__ import annotations

import numpy as np

from vloss.data.synthetic.pretrain_corpus import STUFF_KEPT, THING_KEPT, centre_crop
from vloss.data.synthetic.scenes import compose, draw_recipe, image_rng
from vloss.data.synthetic.vocab import build_vocabulary


def test_crops_centre_the_named_thing_and_keep_only_what_they_show():
    vocab = build_vocabulary()
    checked = 0
    for i in range(40):
        rng = image_rng(0, "pretrain_corpus", i)
        name = vocab.all_things[i % len(vocab.all_things)]
        scene = compose(rng, draw_recipe(rng, vocab.all_things, vocab.all_stuff, (0, 1), [name], zipf=0.0))
        target = next((s for s in scene.segments if s.isthing and s.name == name), None)
        crop = centre_crop(rng, scene, name)
        if target is None:
            assert crop is scene
            continue
        checked += 1
        side = crop.label.shape[0]
        assert crop.label.shape == (side, side) and crop.image.shape == (side, side, 3)
        assert side <= min(scene.label.shape)
        # find where the crop came from by matching the image (brute force over offsets)
        h, w = scene.label.shape
        corner = np.all(scene.image[:h - side + 1, :w - side + 1] == crop.image[0, 0], axis=-1)
        spots = [(y, x) for y, x in zip(*np.nonzero(corner))
                 if np.array_equal(scene.image[y:y + side, x:x + side], crop.image)]
        assert spots
        y0, x0 = spots[0]
        window = scene.label[y0:y0 + side, x0:x0 + side]
        assert (window == target.index).sum() > 0  # the named thing is in view
        kept = {s.index for s in crop.segments}
        for seg in scene.segments:
            share = (window == seg.index).sum() / ((scene.label == seg.index).sum() if seg.isthing else window.size)
            assert (seg.index in kept) == (share >= (THING_KEPT if seg.isthing else STUFF_KEPT)), seg.name
        assert set(np.unique(crop.label)) <= kept | {0}
    assert checked >= 20
