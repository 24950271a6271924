"""The one image decoder: 16-bit, palette, alpha, CMYK and EXIF-rotated files decode correctly.

Each case compares with pixels computed independently (the values written into the file) and
shows that a plain ``convert("RGB")`` gets it wrong, which is what every stage did before.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from vloss.data.images import decode_image


def _png(image: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _plain(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def test_16_bit_grayscale_is_scaled_not_clipped():
    ramp = (np.arange(48 * 64).reshape(48, 64) * 21).astype(np.uint16)  # up to ~64500
    data = _png(Image.fromarray(ramp))
    got = decode_image(data)
    assert got.shape == (48, 64, 3) and got.dtype == np.uint8
    assert np.array_equal(got[:, :, 0], (ramp >> 8).astype(np.uint8))
    assert np.array_equal(got[:, :, 0], got[:, :, 2])
    assert (_plain(data) == 255).mean() > 0.9  # what convert("RGB") gives: nearly all white


def test_alpha_is_composited_onto_black():
    rgba = np.zeros((6, 5, 4), np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[..., 3] = np.array([0, 64, 128, 192, 255])[None, :]
    got = decode_image(_png(Image.fromarray(rgba, "RGBA")))
    want = (rgba[..., :3].astype(np.uint16) * rgba[..., 3:4] + 127) // 255
    assert np.array_equal(got, want.astype(np.uint8))
    assert np.array_equal(got[:, 0], np.zeros((6, 3), np.uint8))
    assert not np.array_equal(_plain(_png(Image.fromarray(rgba, "RGBA"))), got)
    la = Image.fromarray(np.stack([np.full((4, 4), 100, np.uint8), np.full((4, 4), 0, np.uint8)], -1), "LA")
    assert decode_image(_png(la)).max() == 0


def test_palette_with_and_without_transparency():
    p = Image.new("P", (4, 3))
    p.putpalette([10, 20, 30, 200, 150, 100] + [0] * 762)
    p.putpixel((1, 1), 1)
    got = decode_image(_png(p))
    assert tuple(got[0, 0]) == (10, 20, 30) and tuple(got[1, 1]) == (200, 150, 100)
    clear = decode_image(_png(p, transparency=0))  # palette entry 0 transparent -> black
    assert tuple(clear[0, 0]) == (0, 0, 0) and tuple(clear[1, 1]) == (200, 150, 100)


def test_cmyk_jpeg_converts():
    data = io.BytesIO()
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(data, format="JPEG", quality=100)
    got = decode_image(data.getvalue())
    assert got.shape == (8, 8, 3) and tuple(got[4, 4]) == pytest.approx((255, 0, 0), abs=3)


def test_exif_orientation_is_applied():
    """A 20 x 10 image stored with orientation 6 (rotate 90 CW to display) decodes as 10 x 20, with
    the stored top-left pixel at the displayed top-right."""
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[0, 0] = (255, 0, 0)
    arr[:3, :3] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", exif=exif.tobytes(), quality=100)
    got = decode_image(buf.getvalue())
    assert got.shape == (20, 10, 3)
    assert got[1, 8, 0] > 200 and got[1, 1, 0] < 50
    assert _plain(buf.getvalue()).shape == (10, 20, 3)  # convert("RGB") leaves it sideways


def test_truncated_and_non_images_raise():
    buf = io.BytesIO()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 90).save(buf, format="JPEG")
    with pytest.raises(OSError):
        decode_image(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(OSError):
        decode_image(b"not an image")
