"""Which rows a rank reads in one pass over a task's shards, and in which order.

A pass's order is drawn from (seed, task, pass) alone, so it is the same on a re-run and after a
resume, and different from pass to pass and seed to seed:

1. The task's rows are cut into *units*: the Parquet row groups of its shards (``row_group_rows``
   rows each, the shards' own row groups, so a unit is one contiguous read). With
   ``images_cap`` only the first ``cap`` rows in manifest order take part (a fixed subset).
2. The units are permuted (seed, task, pass) and laid end to end; rank ``r`` of ``W`` takes rows
   ``[r*M, (r+1)*M)`` of that sequence, ``M = N // W`` (disjoint ranks; the remainder is dropped,
   as Ray Train's ``equal`` split does). A rank therefore reads whole row groups, at most two of
   them partially, and no row group is read by more than two ranks.
3. A rank's sequence is cut into *windows* of ``window_units`` units; the rows of each window are
   permuted (seed, task, pass, rank, window). Batches are consecutive runs of ``batch`` rows, so a
   batch mixes rows of up to ``window_units`` row groups from randomly drawn shards.

How close to a full shuffle: two rows of one row group land in the same window, and with
``window_units = K`` units of ``g`` rows and a per-rank batch of ``b``, they share a batch with
probability about ``(b - 1) / (K * g - 1)`` (a full shuffle: ``(b - 1) / (N - 1)``); two rows of
one shard in different row groups share a batch only if their units are drawn into one window.
Defaults g = 16, K = 8: 128-row windows, 3/127 = 2.4 % at b = 4 (the paper's 4 images per GPU).

A resumed pass skips its first ``skip_rows`` rows by dropping them from the plan, so the rows a
run has already trained on are neither read nor decoded again. The plan costs O(rows of the
task) integers on each worker at the start of a pass, nothing on the driver. No ray, no torch.
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


def rank_windows(shard_rows: list[int], *, seed: int, task: str, pass_index: int, rank: int, world: int,
                 batch: int, row_group_rows: int = ROW_GROUP_ROWS, window_units: int = WINDOW_UNITS,
                 cap: int = 0, skip_rows: int = 0, rank_batches: tuple[int, ...] | list[int] | None = None
                 ) -> list[Window]:
    """The windows rank ``rank`` reads in pass ``pass_index``, after ``skip_rows`` trained rows.

    Args:
        shard_rows: rows per shard, in manifest order.
        seed, task, pass_index: what the order is drawn from.
        rank, world: this rank and the number of ranks.
        batch: rows per batch on this rank; the plan keeps ``(N // world) // batch`` whole batches.
        row_group_rows: rows per Parquet row group of the shards.
        window_units: row groups whose rows are shuffled together.
        cap: use only the first ``cap`` rows of the task (0: all).
        skip_rows: rows of this pass already trained on (a resume), left out of the plan.
        rank_batches: every rank's batch where they differ (a global batch the workers do not
            divide): the pass has ``N // sum(rank_batches)`` steps and rank ``r`` takes that many
            batches of ``rank_batches[r]`` rows, its slice following those of the ranks before it.

    Returns:
        Windows in training order; their rows, concatenated, are this rank's pass.
    """
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside a world of {world}")
    units = _units(shard_rows, row_group_rows, cap)
    n_total = sum(n for _, _, n in units)
    if rank_batches is not None and len(set(rank_batches)) > 1:
        if len(rank_batches) != world or rank_batches[rank] != batch:
            raise ValueError(f"rank_batches {list(rank_batches)} do not fit rank {rank} of {world} with batch {batch}")
        steps = n_total // sum(rank_batches)
        lo = steps * sum(rank_batches[:rank])
        hi = lo + steps * batch
    else:
        per_rank = n_total // world
        lo = rank * per_rank
        hi = lo + (per_rank // batch) * batch
    code = task_code(task)
    order = np.random.default_rng([int(seed), code, pass_index]).permutation(len(units))
    pieces, pos = [], 0  # (shard, first row, rows) of this rank's slice, unit by unit
    for u in order:
        s, start, n = units[u]
        a, b = max(pos, lo), min(pos + n, hi)
        if a < b:
            pieces.append((s, start + (a - pos), b - a))
        pos += n
        if pos >= hi:
            break
    windows, done = [], 0
    for w in range(0, len(pieces), window_units):
        group = pieces[w:w + window_units]
        rows = [(s, r) for s, first, n in group for r in range(first, first + n)]
        perm = np.random.default_rng([int(seed), code, pass_index, rank, w // window_units]).permutation(
            len(rows))
        rows = [rows[i] for i in perm]
        if done + len(rows) <= skip_rows:
            done += len(rows)
            continue
        rows = rows[max(0, skip_rows - done):]
        done = skip_rows
        reads = tuple(sorted({(s, r // row_group_rows) for s, r in rows}))
        windows.append(Window(reads=reads, rows=tuple(rows)))
    return windows
