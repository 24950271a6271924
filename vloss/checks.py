"""Range checks for config fields, run when a config is built or overridden (``--set``), so that
a dry run refuses what a run would (issue #28 item 6). Messages name the field as a user types it."""

from __future__ import annotations

import math
from typing import Any


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def positive(section: str, **values: Any) -> None:
    """Each value is a finite number > 0."""
    for name, v in values.items():
        if not (_number(v) and math.isfinite(v) and v > 0):
            raise ValueError(f"{section}.{name} must be a finite number > 0, got {v!r}")


def non_negative(section: str, **values: Any) -> None:
    """Each value is a finite number >= 0."""
    for name, v in values.items():
        if not (_number(v) and math.isfinite(v) and v >= 0):
            raise ValueError(f"{section}.{name} must be a finite number >= 0, got {v!r}")


def fraction(section: str, closed_high: bool = True, **values: Any) -> None:
    """Each value lies in [0, 1] (or [0, 1) with ``closed_high=False``)."""
    for name, v in values.items():
        ok = _number(v) and math.isfinite(v) and 0 <= v and (v <= 1 if closed_high else v < 1)
        if not ok:
            raise ValueError(f"{section}.{name} must be in [0, 1{']' if closed_high else ')'}, got {v!r}")


def at_least(section: str, minimum: int, **values: Any) -> None:
    """Each value is an integer >= ``minimum``."""
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ValueError(f"{section}.{name} must be an integer >= {minimum}, got {v!r}")


def divides(section: str, heads_key: str, heads: int, width_key: str, width: int) -> None:
    """Attention heads divide the width they split."""
    if heads and width % heads:
        raise ValueError(f"{section}.{heads_key}={heads} does not divide {section}.{width_key}={width}: "
                         f"each attention head needs an equal share of the width")
