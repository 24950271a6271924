"""JPEGs decode at reduced size where the augmentation shrinks them anyway (issue #24 item 4).

References: the full-size decode followed by the same augmentation with the same draws (bit-equal
where nothing is reduced, close where a JPEG is: DCT scaling vs bilinear downsampling), and the
image's true size from its header (EXIF rotation applied).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pipelines.train.transforms import CaptionTransform, DenseTransform, sample_rng
from vloss.data.images import decode_image, decode_image_reduced
from vloss.data.masks import encode_rle
from vloss.data.transforms import large_scale_jitter, pack_masks, random_resized_crop


def _photo(h: int = 600, w: int = 800) -> np.ndarray:
    """A smooth picture with edges (what JPEG is for): gradients and two discs."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (h + w)], -1).astype(np.uint8)
    img[(y - 200) ** 2 + (x - 250) ** 2 < 90 ** 2] = (230, 40, 40)
    img[(y - 380) ** 2 + (x - 560) ** 2 < 120 ** 2] = (30, 200, 60)
    return img


def _encode(img: np.ndarray, fmt: str, orientation: int | None = None) -> bytes:
    buf = io.BytesIO()
    im = Image.fromarray(img)
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        im.save(buf, fmt, quality=95, exif=exif)
    else:
        im.save(buf, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


def test_a_jpeg_decodes_at_the_smallest_scale_that_is_large_enough() -> None:
    data = _encode(_photo(), "JPEG")
    img, full = decode_image_reduced(data, 190, 140)
    assert full == (600, 800) and img.shape == (150, 200, 3)  # 1/4 scale: the largest reduction >= 190x140
    img, full = decode_image_reduced(data, 700, 500)
    assert img.shape == (600, 800, 3)  # no reduction reaches 700 wide
    assert np.array_equal(img, decode_image(data))
    reduced, _ = decode_image_reduced(data, 100, 75)
    ref = np.asarray(Image.fromarray(decode_image(data)).resize((100, 75), Image.BILINEAR), dtype=float)
    assert reduced.shape == (75, 100, 3) and np.abs(reduced.astype(float) - ref).mean() < 4.0


def test_png_and_exif_rotation() -> None:
    png = _encode(_photo(120, 160), "PNG")
    img, full = decode_image_reduced(png, 20, 15)
    assert full == (120, 160) and np.array_equal(img, decode_image(png))  # no reduced decoding: full size
    rotated = _encode(_photo(), "JPEG", orientation=6)  # stored 800 wide, shown 600 wide
    img, full = decode_image_reduced(rotated, 150, 200)
    assert full == (800, 600) and img.shape == (200, 150, 3)
    assert decode_image(rotated).shape == (800, 600, 3)


def _dense_row(data: bytes, h: int, w: int) -> dict:
    mask = np.zeros((h, w), bool)
    mask[110:290, 160:340] = True
    return {"dataset": "test", "image_id": 5, "file_name": "x.jpg", "image": data, "height": h, "width": w,
            "instances": [{"iscrowd": False, "label": 2, "segmentation": encode_rle(mask)["counts"]}]}


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_dense_transform_matches_the_full_size_decode(fmt: str) -> None:
    photo = _photo()
    data = _encode(photo, fmt)
    row = _dense_row(data, 600, 800)
    # jitter scales 0.1-0.3 of 128: the image is resized to at most ~38 px, a JPEG decodes at 1/8
    t = DenseTransform(128, 0.1, 0.3, seed=1, task="panoptic", pass_index=2)
    got = t(row)
    masks = np.zeros((1, 600, 800), bool)
    masks[0, 110:290, 160:340] = True
    ref = large_scale_jitter(decode_image(data), masks, np.array([2]), 128, sample_rng(1, "panoptic", 2, 5),
                             0.1, 0.3)
    assert got["masks"] == pack_masks(ref.masks)  # the same draws: the same crop, flip and masks
    assert int(got["num_masks"]) == len(ref.labels) == 1
    diff = np.abs(got["image"].astype(float) - ref.image.astype(float)).mean()
    if fmt == "PNG":
        assert diff == 0.0
    else:
        assert 0.0 < diff < 4.0  # decoded at 1/8 scale (a different but close resampling)


def test_caption_transform_matches_the_full_size_decode() -> None:
    data = _encode(_photo(), "JPEG")
    row = {"image_id": 9, "image": data, "height": 600, "width": 800, "captions": ["a", "b"]}
    got = CaptionTransform(64, seed=4, pass_index=1)(row)
    ref = random_resized_crop(decode_image(data), 64, sample_rng(4, "captions", 1, 9))
    assert got["image"].shape == ref.shape == (64, 64, 3)
    assert np.abs(got["image"].astype(float) - ref.astype(float)).mean() < 6.0
    assert got["caption"] in ("a", "b")
