"""Per-task batch streams over Ray Train's dataset shards, positioned by the step schedule."""

from __future__ import annotations

import time
from typing import Any, Iterator

import torch

from pipelines.train.collate import collate_fns


class TaskStreams:
    """One batch iterator per task, positioned by the schedule's data cursors.

    A cursor says "batch ``b`` of pass ``p``". A new pass opens a new ``iter_torch_batches``
    (a barrier across ranks, which all ranks reach at the same step); after a resume the
    already-consumed batches of the current pass are read and dropped.
    """

    def __init__(self, shards: dict[str, Any], batch_sizes: dict[str, int], device: torch.device) -> None:
        self.shards, self.batch_sizes, self.device = shards, batch_sizes, device
        self._state: dict[str, tuple[int, int, Iterator]] = {}  # task -> (pass, next batch, iterator)
        self.wait_s = 0.0

    def _open(self, task: str) -> Iterator:
        return iter(self.shards[task].iter_torch_batches(
            batch_size=self.batch_sizes[task], collate_fn=collate_fns()[task], drop_last=True, prefetch_batches=2))

    def next(self, task: str, pass_index: int, batch_index: int) -> dict[str, Any]:
        t0 = time.perf_counter()
        state = self._state.get(task)
        if state is None or state[0] != pass_index or state[1] > batch_index:
            state = (pass_index, 0, self._open(task))
        p, b, it = state
        while b < batch_index:  # resume: drop batches this pass already trained on
            next(it)
            b += 1
        try:
            batch = next(it)
        except StopIteration as e:
            raise RuntimeError(f"dataset '{task}' ran out at batch {b} of pass {p}: the schedule expected "
                               f"more rows than the shard holds (did the shards change since the run "
                               f"started?)") from e
        self._state[task] = (p, b + 1, it)
        self.wait_s += time.perf_counter() - t0
        return batch
