"""Image decoding for every stage, torch-free.

Ray workers import the module that defines a task function; decode tasks that imported torch
(through a model module) would spend seconds of a small machine on imports they never use. This
module imports only numpy and PIL, and a test proves the decode modules of the stages stay so.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def decode_rgb(data: bytes) -> np.ndarray:
    """Decode an encoded image (JPEG, PNG, ...) to RGB.

    Args:
        data: the file's bytes.

    Returns:
        ``[H, W, 3]`` uint8.
    """
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def decode_rgb_image(data: bytes) -> Image.Image:
    """Decode an encoded image to an RGB ``PIL.Image`` (for resizing before conversion)."""
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")
