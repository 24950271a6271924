"""Panoptic PNGs -> segment ids, decoded once and read as one uint32 per pixel.

COCO panoptic PNGs store a segment id per pixel as RGB (``id = R + 256 G + 256^2 B``).
Pillow keeps a decoded RGB / RGBA image as 4 bytes per pixel, so reading that memory as
little-endian uint32 gives ``id + 256^3 * (pad or alpha)``: the id is ``value & ID_MASK``.
No [H, W, 3] array is made and no 64-bit arithmetic is done (the COCO panoptic API builds
an [H, W, 3] uint32 copy and sums three channels).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from vloss.data.errors import DataFormatError

ID_MASK = 0xFFFFFF  # the id bits of a raw 32-bit PNG pixel (R, G, B; the top byte is pad or alpha)


def _rgbx_pixels(im: Image.Image) -> np.ndarray:
    """[H * W] little-endian uint32 of a loaded RGB / RGBA image: ``R + 256 G + 256^2 B + 256^3 pad``.

    Pillow stores such images as 4 bytes per pixel. Through the Arrow C data interface
    (Pillow >= 11.2, pyarrow) numpy views that memory without copying and without holding
    the GIL for a copy; images Pillow keeps in several blocks (over 16 MiB), or older
    versions, take one packing copy (``tobytes``) instead.
    """
    if hasattr(im, "__arrow_c_array__"):
        try:
            import pyarrow as pa
        except ImportError:
            pa = None
        if pa is not None:
            try:
                values = pa.array(im).flatten().to_numpy(zero_copy_only=True)  # [H * W * 4] uint8, a view
            except (pa.ArrowException, ValueError, TypeError):
                values = None  # e.g. "Image rows are not contiguous in memory"
            if values is not None and values.dtype == np.uint8 and values.size == 4 * im.width * im.height:
                return values.view("<u4")
    raw = im.tobytes("raw", "RGBX" if im.mode == "RGB" else "RGBA")  # [H * W * 4] bytes
    return np.frombuffer(raw, dtype="<u4")


def read_png_pixels(path: str | os.PathLike, image_id: Any = None) -> np.ndarray:
    """Decode a panoptic PNG to [H, W] uint32 raw pixels: ``id + 256^3 * (pad or alpha)``.

    The segment id of a pixel is ``value & ID_MASK``. The array may be a read-only view
    of the decoded image (:func:`_rgbx_pixels`); :func:`read_panoptic_png` masks it.

    Args:
        path: the PNG file (mode RGB or RGBA).
        image_id: used in error messages.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "panoptic PNG not found", field="file_name", record=f"image_id={image_id}")
    try:
        with Image.open(path) as im:
            if im.mode not in ("RGB", "RGBA"):
                raise DataFormatError(path, f"panoptic PNG must be RGB, got mode {im.mode}",
                                      field="file_name", record=f"image_id={image_id}")
            im.load()
            width, height = im.size
            return _rgbx_pixels(im).reshape(height, width)
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataFormatError(path, f"not a readable PNG ({e})", field="file_name",
                              record=f"image_id={image_id}") from None


def read_panoptic_png(path: str | os.PathLike, image_id: Any = None) -> np.ndarray:
    """RGB-encoded panoptic PNG -> [H, W] uint32 segment ids (``R + 256 G + 256^2 B``).

    No [H, W, 3] array and no 64-bit arithmetic: the decoded pixels are read as one
    uint32 each and the top byte is masked off.

    Args:
        path: the PNG file (mode RGB or RGBA; alpha is ignored).
        image_id: used in error messages.
    """
    return np.bitwise_and(read_png_pixels(path, image_id), ID_MASK, dtype=np.uint32)
