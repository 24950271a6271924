"""Decode stage of the evaluation job (Ray tasks): read, decode and resize each image.

Imports only numpy, PIL and ``pyarrow.fs`` (through the shared modules), so decode workers never
pay for importing torch (``tests/pipelines/test_layout.py`` proves it stays so).
"""

from __future__ import annotations

import numpy as np

from pipelines.common.images import decode_rgb
from pipelines.common.storage import locate
from vloss.data.transforms import resize_for_inference


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
            rgb = decode_rgb(locate(str(path)).read_bytes())  # [H, W, 3] uint8
            if rgb.shape[:2] != (int(h), int(w)):
                raise ValueError(f"image is {rgb.shape[1]}x{rgb.shape[0]} but the annotation file says "
                                 f"{int(w)}x{int(h)}")
            arr = resize_for_inference(rgb, size, max_size)  # [rh, rw, 3] uint8
            rh, rw = arr.shape[:2]
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
