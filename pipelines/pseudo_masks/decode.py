"""Image decoding stage of the pseudo-mask job (Ray tasks).

Kept in its own module that imports only numpy, PIL and ``pyarrow.fs``: Ray workers
import the module of a task function, and a decode worker that imported torch (via
the teacher) would spend seconds of a 2-core machine on imports it never uses
(``tests/pipelines/test_layout.py`` proves it stays so).
"""

from __future__ import annotations

import numpy as np

from pipelines.common.storage import locate
from vloss.data.images import decode_image as decode_rgb


def decode_images(batch: dict[str, np.ndarray], images_root: str) -> dict[str, np.ndarray]:
    """Ray task: read each image through ``pyarrow.fs`` and decode it to raw RGB bytes.

    Failures (missing file, truncated or corrupt JPEG, size different from the JSON)
    become an ``error`` string on the row instead of an exception, so the driver can
    count and report them (or abort with ``--strict``).

    Args:
        batch: columns ``image_id, file_name, height, width, ...``.
        images_root: the image root (path or URI).
    Returns:
        the batch plus ``pixels`` (``H*W*3`` uint8 bytes, empty on failure) and ``error``.
    """
    root = locate(images_root)
    pixels, errors = [], []
    for name, h, w in zip(batch["file_name"], batch["height"], batch["width"]):
        loc = root.child(str(name))
        try:
            arr = decode_rgb(loc.read_bytes())                        # [H, W, 3] uint8
            if arr.shape[:2] != (int(h), int(w)):
                raise ValueError(f"image is {arr.shape[1]}x{arr.shape[0]} but the JSON says {int(w)}x{int(h)}")
            pixels.append(arr.tobytes())
            errors.append("")
        except Exception as exc:  # missing file, truncated/corrupt JPEG, size mismatch
            pixels.append(b"")
            errors.append(f"{loc.uri}: {type(exc).__name__}: {exc}")
    out = dict(batch)
    out["pixels"] = np.array(pixels, dtype=object)
    out["error"] = np.array(errors, dtype=object)
    return out
