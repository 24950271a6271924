"""``torch.load`` with ``weights_only=True``, the one way a checkpoint or weights file is read.

Used by :mod:`vloss.checkpoint` and :mod:`vloss.model.weights`; it imports no other module of the
package, so both can depend on it without depending on each other. torch is imported on first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def safe_torch_load(path: str | Path) -> Any:
    """``torch.load(weights_only=True)``; anything it refuses (not a checkpoint, a pickle that would
    run code, a truncated file) becomes an error naming the file. Nothing in the file is executed.

    Raises:
        ValueError: naming ``path`` and the first line of torch's refusal.
    """
    import pickle
    import struct
    import zipfile

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, AttributeError,
            TypeError, LookupError, struct.error) as exc:  # LookupError: a text file can give KeyError, IndexError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: not a checkpoint this job can load safely "
                         f"(torch.load with weights_only=True refused it: {first})") from exc
