"""Training transforms: masks follow the image exactly; packing is lossless."""

import numpy as np
import pytest

from vloss.data.transforms import (
    large_scale_jitter,
    normalize_images,
    pack_masks,
    pick_caption,
    random_resized_crop,
    sample_rng,
    unpack_masks,
)


def _scene(h=60, w=80):
    img = np.zeros((h, w, 3), np.uint8)
    masks = np.zeros((2, h, w), bool)
    masks[0, 5:25, 10:40] = True
    masks[1, 30:55, 50:75] = True
    img[masks[0]] = (255, 0, 0)
    img[masks[1]] = (0, 255, 0)
    return img, masks, np.array([3, 7])


def test_identity_scale_keeps_everything():
    img, masks, labels = _scene(64, 64)
    out = large_scale_jitter(img, masks, labels, 64, np.random.default_rng(0), 1.0, 1.0, flip=False)
    assert np.array_equal(out.image, img)
    assert np.array_equal(out.masks, masks)
    assert out.labels.tolist() == [3, 7]
    assert out.valid.all()


@pytest.mark.parametrize("seed", range(6))
def test_masks_follow_image(seed):
    img, masks, labels = _scene()
    out = large_scale_jitter(img, masks, labels, 96, np.random.default_rng(seed), 0.5, 2.0)
    assert out.image.shape == (96, 96, 3) and out.masks.shape[1:] == (96, 96)
    for m, lab in zip(out.masks, out.labels):
        colour = (255, 0, 0) if lab == 3 else (0, 255, 0)
        # interior pixels of each mask (3 px away from resampling borders) carry the instance colour
        inner = m.copy()
        for _ in range(3):  # PIL's antialiased downscaling blends up to ~3 px at these scales
            e = inner.copy()
            e[1:] &= inner[:-1]
            e[:-1] &= inner[1:]
            e[:, 1:] &= inner[:, :-1]
            e[:, :-1] &= inner[:, 1:]
            inner = e
        assert (out.image[inner] == colour).all()
    # padding is invalid and black; masks never lie on padding
    assert not out.image[~out.valid].any()
    assert not (out.masks & ~out.valid).any()


def test_instances_cropped_away_are_dropped():
    img, masks, labels = _scene()
    kept = set()
    for seed in range(30):
        out = large_scale_jitter(img, masks, labels, 32, np.random.default_rng(seed), 2.0, 2.0)
        assert len(out.masks) == len(out.labels) and all(m.any() for m in out.masks)
        kept.add(len(out.labels))
    assert 1 in kept  # at scale 2 a 32-px crop sometimes contains only one instance


def test_same_rng_same_sample():
    img, masks, labels = _scene()
    a = large_scale_jitter(img, masks, labels, 48, sample_rng(1, 2, 3))
    b = large_scale_jitter(img, masks, labels, 48, sample_rng(1, 2, 3))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.masks, b.masks)


def test_pack_roundtrip():
    m = np.random.default_rng(0).random((3, 17, 13)) > 0.5
    assert np.array_equal(unpack_masks(pack_masks(m), 3, 17, 13), m)
    assert unpack_masks(pack_masks(np.zeros((0, 5, 5), bool)), 0, 5, 5).shape == (0, 5, 5)


def test_resized_crop_and_caption():
    img, _, _ = _scene()
    out = random_resized_crop(img, 24, np.random.default_rng(0))
    assert out.shape == (24, 24, 3) and out.dtype == np.uint8
    assert pick_caption(["a", "b"], np.random.default_rng(0)) in {"a", "b"}
    with pytest.raises(ValueError):
        pick_caption([], np.random.default_rng(0))


def test_normalize_formula():
    x = np.full((1, 2, 2, 3), 255, np.uint8)
    t = normalize_images(x)
    assert t.shape == (1, 3, 2, 2)
    assert abs(float(t[0, 0, 0, 0]) - (1 - 0.485) / 0.229) < 1e-5
