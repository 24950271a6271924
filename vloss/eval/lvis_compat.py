"""The one place that makes lvis-api 0.5.3 run on NumPy >= 1.24.

What breaks: ``lvis/eval.py`` ``LVISEval.accumulate`` calls
``np.cumsum(...).astype(dtype=np.float)``; NumPy 1.24 removed the ``np.float`` alias
(it was the builtin ``float``, i.e. float64), so ``LVISEval.run()`` raises
``AttributeError``. Nothing else in the package uses a removed alias (checked by
``grep`` of ``lvis/*.py``; ``tests/eval/test_lvis.py`` proves ``run()`` still fails
without this module and succeeds with it).

The fix chosen: a subclass, :class:`LVISEvalCompat`, whose ``accumulate`` runs the
*unchanged* upstream method while ``np.float`` exists as the builtin ``float`` it used
to be, and removes the alias again afterwards. Compared with rewriting ``accumulate`` in a
subclass, this keeps the upstream AP algorithm byte-for-byte (nothing copied that could
drift), and the alias is present only for the duration of that call, guarded by a lock so
concurrent evaluations in one process keep it consistent. If a future lvis release stops
using ``np.float``, the shim simply has nothing to do.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

import numpy as np
from lvis import LVISEval

_LOCK = threading.RLock()
_DEPTH = 0


@contextlib.contextmanager
def numpy_float_alias() -> Iterator[None]:
    """Provide ``np.float = float`` (its pre-1.24 meaning) inside the block only.

    Nested and concurrent uses share one alias; it is removed when the last user leaves.
    If NumPy itself still defines ``np.float`` the block changes nothing.
    """
    global _DEPTH
    with _LOCK:
        owned = _DEPTH > 0 or "float" not in np.__dict__
        if owned:
            if _DEPTH == 0:
                np.float = float  # type: ignore[attr-defined]
            _DEPTH += 1
    try:
        yield
    finally:
        if owned:
            with _LOCK:
                _DEPTH -= 1
                if _DEPTH == 0:
                    del np.float  # type: ignore[attr-defined]


class LVISEvalCompat(LVISEval):
    """``lvis.LVISEval`` whose ``accumulate`` works on current NumPy (see module doc)."""

    def accumulate(self) -> None:
        with numpy_float_alias():
            super().accumulate()
