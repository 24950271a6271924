"""Decode stage of the evaluation job (Ray tasks): read, decode and resize each image.

Imports only numpy, PIL and ``pyarrow.fs`` (through the shared modules), so decode workers never
pay for importing torch (``tests/pipelines/test_layout.py`` proves it stays so).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from pipelines.common.images import decode_rgb_image
from pipelines.common.storage import locate
from vloss.data.transforms import resized_shape


def decode_eval_images(batch: dict[str, np.ndarray], size: int, max_size: int) -> dict[str, np.ndarray]:
    """Ray task: read, decode and resize each image; failures become an ``error`` string.

    Args:
        batch: columns ``index, path, height, width``.
        size: shorter side of the network input.
        max_size: cap on the longer side.

    Returns:
        ``index, height, width`` plus ``pixels`` (``rh*rw*3`` uint8 bytes, empty on failure),
        ``rh, rw`` (resized size) and ``error``.
    """
    pixels, rhs, rws, errors = [], [], [], []
    for path, h, w in zip(batch["path"], batch["height"], batch["width"]):
        try:
            rgb = decode_rgb_image(locate(str(path)).read_bytes())
            if (rgb.height, rgb.width) != (int(h), int(w)):
                raise ValueError(f"image is {rgb.width}x{rgb.height} but the annotation file says {int(w)}x{int(h)}")
            rh, rw = resized_shape(int(h), int(w), size, max_size)
            arr = np.asarray(rgb.resize((rw, rh), resample=Image.BILINEAR))  # [rh, rw, 3] uint8
            pixels.append(arr.tobytes())
            rhs.append(rh)
            rws.append(rw)
            errors.append("")
        except Exception as exc:  # missing file, corrupt image, size mismatch: a counted skip
            pixels.append(b"")
            rhs.append(0)
            rws.append(0)
            errors.append(f"{path}: {type(exc).__name__}: {exc}")
    return {"index": batch["index"], "height": batch["height"], "width": batch["width"],
            "pixels": np.array(pixels, dtype=object), "rh": np.array(rhs, dtype=np.int64),
            "rw": np.array(rws, dtype=np.int64), "error": np.array(errors, dtype=object)}
