"""Per-task batch streams, positioned by the step schedule's data cursors."""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator

import torch

# open_pass(task, pass_index, skip_batches) -> iterator over this rank's batches of that pass,
# starting after the first ``skip_batches`` (which are neither read nor decoded)
OpenPass = Callable[[str, int, int], Iterator[dict[str, Any]]]


class TaskStreams:
    """One batch iterator per task, positioned by the schedule's data cursors.

    A cursor says "batch ``b`` of pass ``p``". A new pass opens the pass's own iterator, whose
    order is drawn from (seed, task, pass) (:mod:`pipelines.train.pass_plan`); after a resume the
    pass is opened at batch ``b``, its first ``b`` batches left out of the plan.

    Args:
        open_pass: builds a pass's batch iterator (see :data:`OpenPass`).
        device: the training device (unused here; batches move in the trainer).
    """

    def __init__(self, open_pass: OpenPass, device: torch.device | None = None) -> None:
        self.open_pass, self.device = open_pass, device
        self._state: dict[str, tuple[int, int, Iterator]] = {}  # task -> (pass, next batch, iterator)
        self.wait_s = 0.0

    def next(self, task: str, pass_index: int, batch_index: int) -> dict[str, Any]:
        t0 = time.perf_counter()
        state = self._state.get(task)
        if state is None or state[0] != pass_index or state[1] != batch_index:
            state = (pass_index, batch_index, iter(self.open_pass(task, pass_index, batch_index)))
        p, b, it = state
        try:
            batch = next(it)
        except StopIteration as e:
            raise RuntimeError(f"dataset '{task}' ran out at batch {b} of pass {p}: the schedule expected "
                               f"more rows than the shards hold (did the shards change since the run "
                               f"started?)") from e
        self._state[task] = (p, b + 1, it)
        self.wait_s += time.perf_counter() - t0
        return batch
