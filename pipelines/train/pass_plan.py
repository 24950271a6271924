"""Which rows a rank reads in one pass over a task's shards, and in which order.

A pass's order is drawn from (seed, task, pass) alone, so it is the same on a re-run, after a
resume, and on any number of workers (elastic runs, :mod:`pipelines.train.job`):

1. The task's rows are cut into *units*: the Parquet row groups of its shards (``row_group_rows``
   rows each, the shards' own row groups, so a unit is one contiguous read). With
   ``images_cap`` only the first ``cap`` rows in manifest order take part (a fixed subset).
2. The units are permuted (seed, task, pass) and laid end to end, then cut into *windows* of
   ``window_units`` units; the rows of each window are permuted (seed, task, pass, window).
3. Step ``k`` of the pass takes rows ``[k*G, (k+1)*G)`` of that sequence, ``G`` the global batch
   (the remainder of the pass is dropped, as Ray Train's ``equal`` split does). Which images a
   step trains on therefore does not depend on the number of workers.
4. Within a step the rows are ordered by their unit's place in the sequence and cut into the
   ranks' shares, rank by rank (``rank_batches``: 11, 11, 10 for 32 on 3 workers), so a rank's
   share of a step comes from few row groups. A read task is the steps that start in one window;
   it reads the row groups its rows touch, once. One worker reads every row once; at the paper's
   setting (32 images on 8 workers, g = 16, K = 8) a rank reads about 3 rows per row it trains
   on (``tests/pipelines/train/test_pass_plan.py`` measures it). Where the shares do not fill
   ``G`` (captions, whose shares are equal: 512 on 3 workers is 3 x 170), the last
   ``G - sum(rank_batches)`` rows of each step are left out, and the pass keeps its length.

How close to a full shuffle: two rows of one row group land in the same window, and with
``window_units = K`` units of ``g`` rows and a global batch of ``G``, they share a step with
probability about ``(G - 1) / (K * g - 1)`` (a full shuffle: ``(G - 1) / (N - 1)``); two rows of
one shard in different row groups share a step only if their units are drawn into one window.
Defaults g = 16, K = 8: 128-row windows. (With the paper's G = 32 a window holds four steps;
the loss of a step does not depend on how its images are split over ranks, see
:mod:`vloss.training.accumulate`.)

A resumed pass skips its first ``skip_steps`` steps by dropping them from the plan, so the rows a
run has already trained on are neither read nor decoded again, on any number of workers. The plan
costs a few integer arrays of the task's row count on each worker at the start of a pass, nothing
on the driver. No ray, no torch.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

ROW_GROUP_ROWS = 16
WINDOW_UNITS = 8


def data_seed(run_seed: int, input_seed: int) -> int:
    """The seed of a run's data order and augmentation: the run's ``seed`` and ``input.seed`` together."""
    return (int(run_seed) & 0xFFFFFFFF) << 32 | (int(input_seed) & 0xFFFFFFFF)


def task_code(task: str) -> int:
    """A stable integer for a task name (``hash()`` of a string changes per process)."""
    return zlib.crc32(task.encode())


@dataclass(frozen=True)
class Window:
    """Rows one read task yields, in training order.

    Args:
        reads: ``(shard index, row group)`` pairs to read, in any order.
        rows: ``(shard index, row within the shard)`` in the order they are trained on.
    """

    reads: tuple[tuple[int, int], ...]
    rows: tuple[tuple[int, int], ...]


def _units(shard_rows: list[int], row_group_rows: int, cap: int) -> list[tuple[int, int, int]]:
    """(shard, first row, rows) per row group in manifest order, cut at ``cap`` rows (0: all)."""
    units, total = [], 0
    for s, n in enumerate(shard_rows):
        for start in range(0, int(n), row_group_rows):
            take = min(row_group_rows, int(n) - start)
            if cap:
                take = min(take, cap - total)
                if take <= 0:
                    return units
            units.append((s, start, take))
            total += take
    return units


def pass_rows(shard_rows: list[int], row_group_rows: int, cap: int) -> int:
    """Rows that take part in every pass (all of them, or the first ``cap``)."""
    return sum(n for _, _, n in _units(shard_rows, row_group_rows, cap))


def pass_sequence(shard_rows: list[int], *, seed: int, task: str, pass_index: int,
                  row_group_rows: int = ROW_GROUP_ROWS, window_units: int = WINDOW_UNITS, cap: int = 0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """A pass's rows in order (steps 1-2 of the module docstring).

    Returns:
        ``rows`` (int64, ``(N,)``): each row as its index over all shards (``shard_base[s] + row``);
        ``unit_pos`` (int64, ``(N,)``): the place of each row's unit in the permuted sequence.
    """
    units = _units(shard_rows, row_group_rows, cap)
    base = np.concatenate([[0], np.cumsum(np.asarray(shard_rows, dtype=np.int64))])
    code = task_code(task)
    order = np.random.default_rng([int(seed), code, pass_index]).permutation(len(units))
    sizes = np.asarray([units[u][2] for u in order], dtype=np.int64)
    starts = np.asarray([base[units[u][0]] + units[u][1] for u in order], dtype=np.int64)
    unit_pos = np.repeat(np.arange(len(order), dtype=np.int64), sizes)
    first = np.repeat(np.cumsum(sizes) - sizes, sizes)
    rows = np.repeat(starts, sizes) + (np.arange(int(sizes.sum()), dtype=np.int64) - first)
    bounds = np.cumsum(sizes)
    for w, lo_unit in enumerate(range(0, len(order), window_units)):
        lo = int(bounds[lo_unit - 1]) if lo_unit else 0
        hi = int(bounds[min(lo_unit + window_units, len(order)) - 1])
        perm = np.random.default_rng([int(seed), code, pass_index, w]).permutation(hi - lo) + lo
        rows[lo:hi], unit_pos[lo:hi] = rows[perm], unit_pos[perm]
    return rows, unit_pos


def rank_windows(shard_rows: list[int], *, seed: int, task: str, pass_index: int, rank: int,
                 rank_batches: tuple[int, ...] | list[int], step_images: int = 0,
                 row_group_rows: int = ROW_GROUP_ROWS, window_units: int = WINDOW_UNITS, cap: int = 0,
                 skip_steps: int = 0) -> list[Window]:
    """The windows rank ``rank`` reads in pass ``pass_index``, after ``skip_steps`` trained steps.

    Args:
        shard_rows: rows per shard, in manifest order.
        seed, task, pass_index: what the order is drawn from.
        rank: this rank.
        rank_batches: every rank's batch, rank by rank (their number is the number of ranks).
        step_images: rows one step takes from the pass, the global batch (0: ``sum(rank_batches)``);
            at least ``sum(rank_batches)``.
        row_group_rows: rows per Parquet row group of the shards.
        window_units: row groups whose rows are shuffled together.
        cap: use only the first ``cap`` rows of the task (0: all).
        skip_steps: steps of this pass already trained (a resume), left out of the plan.

    Returns:
        Windows in training order; their rows, concatenated, are this rank's pass: for every step
        ``rank_batches[rank]`` rows.
    """
    world = len(rank_batches)
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside a world of {world}")
    step = int(step_images) or sum(rank_batches)
    if step < sum(rank_batches) or min(rank_batches) < 1:
        raise ValueError(f"rank_batches {list(rank_batches)} do not fit a step of {step} images")
    rows, unit_pos = pass_sequence(shard_rows, seed=seed, task=task, pass_index=pass_index,
                                   row_group_rows=row_group_rows, window_units=window_units, cap=cap)
    steps = len(rows) // step
    if skip_steps >= steps:
        return []
    block = slice(skip_steps * step, steps * step)
    rows, unit_pos = rows[block].reshape(-1, step), unit_pos[block].reshape(-1, step)
    within = np.argsort(unit_pos, axis=1, kind="stable")  # a step's rows by their unit's place
    lo = sum(rank_batches[:rank])
    mine = np.take_along_axis(rows, within[:, lo:lo + rank_batches[rank]], axis=1)  # (steps left, batch)
    # read tasks: the steps that start in one window of units, together (their groups read once)
    window_of_step = unit_pos[:, 0] // window_units
    base = np.concatenate([[0], np.cumsum(np.asarray(shard_rows, dtype=np.int64))])
    windows = []
    cuts = np.flatnonzero(np.diff(window_of_step)) + 1
    for group in np.split(np.arange(len(mine)), cuts):
        flat = mine[group].reshape(-1)
        shard = np.searchsorted(base, flat, side="right") - 1
        local = flat - base[shard]
        pairs = tuple(zip(shard.tolist(), local.tolist()))
        reads = tuple(sorted({(s, r // row_group_rows) for s, r in pairs}))
        windows.append(Window(reads=reads, rows=pairs))
    return windows
