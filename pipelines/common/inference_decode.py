"""Decode stage of the inference jobs (evaluation, batch prediction): read, decode and resize each image.

Imports only numpy, PIL and ``pyarrow.fs`` (through the shared modules), so decode workers never
pay for importing torch (``tests/pipelines/test_layout.py`` proves it stays so).
"""

from __future__ import annotations

import numpy as np

from pipelines.common.storage import locate
from vloss.data.images import decode_image as decode_rgb
from vloss.data.transforms import resize_for_inference


def decode_eval_images(batch: dict[str, np.ndarray], size: int, max_size: int,
                       keep_original: bool = False) -> dict[str, np.ndarray]:
    """Ray task: read, decode and resize each image; failures become an ``error`` string.

    Args:
        batch: columns ``index, path`` and ``height, width`` (the annotation's size, checked; a
            value of 0 means unknown: the decoded size is taken).
        size: shorter side of the network input.
        max_size: cap on the longer side.
        keep_original: also return the original pixels (``original``: ``H*W*3`` bytes), for overlays.

    Returns:
        ``index, height, width`` plus ``pixels`` (``rh*rw*3`` uint8 bytes, empty on failure),
        ``rh, rw`` (resized size), ``error`` and, with ``keep_original``, ``original``.
    """
    pixels, rhs, rws, errors, heights, widths, originals = [], [], [], [], [], [], []
    for path, h, w in zip(batch["path"], batch["height"], batch["width"]):
        try:
            rgb = decode_rgb(locate(str(path)).read_bytes())  # [H, W, 3] uint8
            if int(h) == 0 and int(w) == 0:
                h, w = rgb.shape[:2]
            if rgb.shape[:2] != (int(h), int(w)):
                raise ValueError(f"image is {rgb.shape[1]}x{rgb.shape[0]} but the annotation file says "
                                 f"{int(w)}x{int(h)}")
            arr = resize_for_inference(rgb, size, max_size)  # [rh, rw, 3] uint8
            rh, rw = arr.shape[:2]
            pixels.append(arr.tobytes())
            originals.append(rgb.tobytes() if keep_original else b"")
            rhs.append(rh)
            rws.append(rw)
            errors.append("")
        except Exception as exc:  # missing file, corrupt image, size mismatch: a counted skip
            pixels.append(b"")
            originals.append(b"")
            rhs.append(0)
            rws.append(0)
            errors.append(f"{path}: {type(exc).__name__}: {exc}")
        heights.append(int(h))
        widths.append(int(w))
    out = {"index": batch["index"], "height": np.array(heights, dtype=np.int64),
           "width": np.array(widths, dtype=np.int64), "pixels": np.array(pixels, dtype=object),
           "rh": np.array(rhs, dtype=np.int64), "rw": np.array(rws, dtype=np.int64),
           "error": np.array(errors, dtype=object)}
    if keep_original:
        out["original"] = np.array(originals, dtype=object)
    return out
