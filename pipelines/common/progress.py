"""The training progress line's feed: :func:`progress_sink` makes a tiny Ray actor through which
a Ray Train worker (rank 0) hands its metric rows to the driver, so the driver draws the training
progress (:class:`vloss.progress.ProgressLine`) even when the workers run on other nodes and their
output is not forwarded (``log_to_driver=False``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["progress_sink"]


class _Sink:
    """Actor body: a queue of metric rows from rank 0, drained by the driver."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def put(self, row: dict[str, Any]) -> None:
        self.rows.append(row)

    def drain(self) -> list[dict[str, Any]]:
        rows, self.rows = self.rows, []
        return rows


def progress_sink():
    """A new progress actor (zero CPUs, so it never competes for a worker's slot): ``put(row)``, ``drain()``."""
    import ray

    return ray.remote(num_cpus=0)(_Sink).remote()
