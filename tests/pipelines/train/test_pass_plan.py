"""The pass plan: seeded, shuffled, disjoint across ranks, resumable by dropping rows (checked by
brute force over the plan's own rows)."""

from __future__ import annotations

import itertools

import pytest

from pipelines.train.pass_plan import pass_rows, rank_windows

SHARDS = [256, 256, 256, 100]  # rows per shard (the last one short)


def rows_of(world: int = 1, rank: int = 0, **kw) -> list[tuple[int, int]]:
    args = dict(seed=0, task="panoptic", pass_index=0, rank=rank, world=world, batch=4)
    args.update(kw)
    return [r for w in rank_windows(SHARDS, **args) for r in w.rows]


def test_unequal_shares_give_every_rank_the_same_steps() -> None:
    """A global batch of 32 on 3 ranks (11/11/10): every rank gets N // 32 batches of its share,
    the ranks are disjoint, and with a resume each continues its own slice."""
    n, split = sum(SHARDS), [11, 11, 10]
    steps = n // 32
    per_rank = [rows_of(3, r, batch=split[r], rank_batches=split) for r in range(3)]
    assert [len(p) for p in per_rank] == [steps * b for b in split]
    flat = [x for p in per_rank for x in p]
    assert len(flat) == len(set(flat))
    assert rows_of(3, 1, batch=11, rank_batches=split, skip_rows=22) == per_rank[1][22:]
    with pytest.raises(ValueError, match="do not fit"):
        rows_of(3, 2, batch=11, rank_batches=split)
    # equal shares keep the plan they had before (same rows for the same seed)
    assert rows_of(2, 1, batch=4, rank_batches=[4, 4]) == rows_of(2, 1, batch=4)


def test_ranks_are_disjoint_whole_batches_of_their_share() -> None:
    n = sum(SHARDS)
    for world, batch in ((1, 4), (2, 4), (3, 5), (8, 2)):
        per_rank = [rows_of(world, r, batch=batch) for r in range(world)]
        assert all(len(p) == (n // world) // batch * batch for p in per_rank)
        flat = [x for p in per_rank for x in p]
        assert len(flat) == len(set(flat))  # disjoint
        assert all(0 <= r < SHARDS[s] for s, r in flat)


def test_order_is_a_function_of_seed_task_and_pass() -> None:
    base = rows_of()
    assert rows_of() == base  # a re-run
    assert sorted(base) == sorted((s, r) for s, n in enumerate(SHARDS) for r in range(n))
    for other in (rows_of(seed=1), rows_of(pass_index=1), rows_of(task="detection")):
        assert other != base and sorted(other) == sorted(base)


def test_shard_order_and_order_within_shards_change_between_passes() -> None:
    def first_seen_shards(rows):
        return list(dict.fromkeys(s for s, _ in rows))

    def within(rows, shard):
        return [r for s, r in rows if s == shard]

    a, b = rows_of(pass_index=0), rows_of(pass_index=1)
    assert first_seen_shards(a) != first_seen_shards(b) or within(a, 0) != within(b, 0)
    assert within(a, 0) != within(b, 0)
    assert within(a, 0) != sorted(within(a, 0))  # not in file order


def test_batches_mix_shards() -> None:
    rows = rows_of(batch=4)
    batches = [rows[i:i + 4] for i in range(0, len(rows), 4)]
    mixed = sum(len({s for s, _ in b}) > 1 for b in batches)
    assert mixed / len(batches) > 0.5


def test_skip_rows_is_the_suffix_and_reads_only_what_is_left() -> None:
    full = rank_windows(SHARDS, seed=3, task="captions", pass_index=2, rank=1, world=2, batch=4)
    rows = [r for w in full for r in w.rows]
    for skip in (0, 4, 36, 128, 200, len(rows)):
        part = rank_windows(SHARDS, seed=3, task="captions", pass_index=2, rank=1, world=2, batch=4, skip_rows=skip)
        assert [r for w in part for r in w.rows] == rows[skip:]
        for w in part:  # every row group read holds a row the window yields
            assert set(w.reads) == {(s, r // 16) for s, r in w.rows}


def test_cap_takes_a_fixed_subset() -> None:
    assert pass_rows(SHARDS, 16, 300) == 300
    subsets = [set(rows_of(cap=300, pass_index=p)) for p in range(3)]
    assert all(len(s) == 300 for s in subsets)
    assert subsets[0] == subsets[1] == subsets[2] == {(0, r) for r in range(256)} | {(1, r) for r in range(44)}


def test_neighbours_share_a_batch_as_the_docstring_says() -> None:
    """Two rows of one row group share a batch with probability about (b-1)/(K*g-1) (here 3/127)."""
    shards = [256] * 16
    b, hits, pairs = 4, 0, 0
    for p in range(20):
        rows = [r for w in rank_windows(shards, seed=0, task="panoptic", pass_index=p, rank=0, world=1, batch=b)
                for r in w.rows]
        batch_of = {x: i // b for i, x in enumerate(rows)}
        for s in range(0, 16, 4):
            for g in range(0, 256, 64):  # a few row groups per shard
                members = [(s, g + k) for k in range(16)]
                for x, y in itertools.combinations(members, 2):
                    pairs += 1
                    hits += batch_of[x] == batch_of[y]
    assert hits / pairs == pytest.approx(3 / 127, rel=0.3)


def test_rank_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="rank 2"):
        rank_windows(SHARDS, seed=0, task="panoptic", pass_index=0, rank=2, world=2, batch=4)


def test_plan_of_a_paper_size_task_is_integers_only() -> None:
    """The plan of a 778k-row task (COCO + Objects365) covers this rank's share and nothing else."""
    shards = [256] * (778_000 // 256)
    w = rank_windows(shards, seed=0, task="detection", pass_index=0, rank=3, world=8, batch=4)
    rows = [r for x in w for r in x.rows]
    assert len(rows) == len(set(rows)) == (sum(shards) // 8) // 4 * 4
    assert all(len(x.reads) <= 8 for x in w)  # a window reads at most window_units row groups
