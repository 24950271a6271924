"""The one image decoder of the project: any file a dataset may hold -> 8-bit RGB, correctly.

``Image.convert("RGB")`` alone gets several real inputs wrong: a 16-bit PNG (mode ``I;16``/``I``)
is clipped at 255 (almost all white), an EXIF-rotated JPEG comes out sideways, transparent pixels
keep whatever colour hides under alpha 0. :func:`to_rgb` handles them:

* EXIF orientation is applied first (as detectron2's ``read_image`` does), so sizes are compared
  with the annotation file in the orientation a viewer shows;
* 16-bit and 32-bit integer grayscale are scaled to 8 bits by their bit depth (``>> 8`` for 16-bit;
  32-bit ``I`` images hold 16-bit data in practice and are treated the same), float ``F`` images in
  [0, 1] are scaled by 255;
* alpha (``RGBA``, ``LA``, ``PA``, palette images with transparency) is composited onto black, the
  value the network's zero padding has;
* palette, CMYK, YCbCr, 1-bit and 8-bit grayscale go through Pillow's own conversion.

Imports only numpy and PIL, so Ray decode tasks that use it stay torch-free.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
# file suffixes read as images (an animated GIF gives its first frame)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")


def to_rgb(image: Image.Image) -> np.ndarray:
    """An opened image as ``[H, W, 3]`` uint8 RGB (EXIF orientation applied).

    Args:
        image: a PIL image (any mode).
    """
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(image).astype(np.int64)  # [H, W]
        gray = np.clip(arr >> 8, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "F":
        gray = np.clip(np.asarray(image, dtype=np.float64) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA")).astype(np.uint16)  # [H, W, 4]
        return ((rgba[:, :, :3] * rgba[:, :, 3:4] + 127) // 255).astype(np.uint8)
    if mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image)


def decode_image(data: bytes) -> np.ndarray:
    """Decode an encoded image file (JPEG, PNG, ...) to ``[H, W, 3]`` uint8 RGB with :func:`to_rgb`.

    Raises:
        PIL.UnidentifiedImageError / OSError: not an image, a truncated one, or one over Pillow's
            decompression-bomb limit (``2 * Image.MAX_IMAGE_PIXELS`` pixels).
    """
    if not data:
        raise OSError("empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.seek(0)  # an animated GIF / APNG / multi-page TIFF: its first frame
            im.load()  # a truncated file fails here, not later
            return to_rgb(im)
    except Image.DecompressionBombError as exc:  # not an OSError: callers that skip bad images would crash
        raise OSError(f"refused to decode: {exc}") from exc


# EXIF orientations that swap the stored image's width and height (rotations by 90 degrees)
_SWAPPED = {5, 6, 7, 8}


def displayed_size(image: Image.Image) -> tuple[int, int]:
    """``(H, W)`` of an opened image as a viewer shows it (EXIF rotation applied), from its header."""
    w, h = image.size
    return (w, h) if image.getexif().get(0x0112) in _SWAPPED else (h, w)


def decode_image_reduced(data: bytes, width: int, height: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode to ``[h, w, 3]`` uint8 RGB at no less than ``width`` x ``height``, skipping the work of
    full size where the format allows (a JPEG decodes at 1/2, 1/4 or 1/8 scale, ``Image.draft``).

    A transform that shrinks the image anyway (a small jitter scale, a crop resized to 224) asks for
    the size it will resize to; a format without reduced decoding (PNG, ...) or a request near full
    size decodes at full size, the same pixels as :func:`decode_image`.

    Args:
        data: the encoded file.
        width, height: the smallest decoded size the caller needs, in display orientation.

    Returns:
        ``(image, (H, W))``: the decoded image (EXIF orientation applied) and the full size the file
        holds (display orientation), for checking it against an annotation.

    Raises:
        OSError: as :func:`decode_image`.
    """
    if not data:
        raise OSError("empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.seek(0)
            full = displayed_size(im)
            swapped = full != (im.size[1], im.size[0])
            if im.format == "JPEG":
                want = (max(1, height), max(1, width)) if swapped else (max(1, width), max(1, height))
                im.draft("RGB", want)  # the largest reduction that keeps at least `want`
            im.load()
            return to_rgb(im), full
    except Image.DecompressionBombError as exc:
        raise OSError(f"refused to decode: {exc}") from exc


def read_image(path) -> np.ndarray:
    """Read and decode a local image file with :func:`to_rgb`.

    Raises:
        FileNotFoundError: no such file.
        OSError: not an image, truncated or too large (as :func:`decode_image`), naming the file.
    """
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise OSError(f"{path}: empty file (0 bytes)")
    try:
        return decode_image(data)
    except OSError as exc:  # Pillow names only the in-memory buffer
        raise OSError(f"{path}: {exc}") from exc
