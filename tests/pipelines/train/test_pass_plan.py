"""The pass plan: seeded, shuffled, the same steps on any number of ranks, disjoint across ranks,
resumable by dropping steps (checked by brute force over the plan's own rows)."""

from __future__ import annotations

import itertools

import pytest

from pipelines.train.pass_plan import pass_rows, rank_windows

SHARDS = [256, 256, 256, 100]  # rows per shard (the last one short)
SPLITS = {1: [32], 2: [16, 16], 3: [11, 11, 10], 4: [8, 8, 8, 8], 8: [4] * 8}  # a global batch of 32


def rows_of(rank: int = 0, split: list[int] | None = None, **kw) -> list[tuple[int, int]]:
    args = dict(seed=0, task="panoptic", pass_index=0, rank=rank, rank_batches=split or [4])
    args.update(kw)
    return [r for w in rank_windows(SHARDS, **args) for r in w.rows]


def steps_of(split: list[int], step_images: int = 0, **kw) -> list[set[tuple[int, int]]]:
    """Every step's images over all ranks, as sets (rank ``r`` trains its ``split[r]`` rows per step)."""
    per_rank = [rows_of(r, split, step_images=step_images, **kw) for r in range(len(split))]
    n = len(per_rank[0]) // split[0]
    return [set(itertools.chain.from_iterable(p[k * b:(k + 1) * b] for p, b in zip(per_rank, split)))
            for k in range(n)]


def test_a_step_trains_on_the_same_images_on_any_number_of_ranks() -> None:
    """The elastic property: 1, 2, 3, 4 or 8 ranks, even or uneven shares, the same steps."""
    reference = steps_of(SPLITS[1])
    assert len(reference) == sum(SHARDS) // 32 and all(len(s) == 32 for s in reference)
    for world, split in SPLITS.items():
        assert steps_of(split) == reference, world
    flat = [x for s in reference for x in s]
    assert len(flat) == len(set(flat)) and all(0 <= r < SHARDS[s] for s, r in flat)


def test_ranks_are_disjoint_whole_batches_of_their_share() -> None:
    n = sum(SHARDS)
    for split in SPLITS.values():
        per_rank = [rows_of(r, split) for r in range(len(split))]
        assert [len(p) for p in per_rank] == [n // 32 * b for b in split]
        flat = [x for p in per_rank for x in p]
        assert len(flat) == len(set(flat))


def test_equal_shares_that_do_not_fill_the_step_leave_its_last_rows_out() -> None:
    """Captions: 32 on 3 ranks is 3 x 10; the pass keeps N // 32 steps, each training 30 of its 32 rows."""
    full = steps_of(SPLITS[1])
    part = steps_of([10, 10, 10], step_images=32)
    assert len(part) == len(full)
    assert all(len(p) == 30 and p < f for p, f in zip(part, full))
    with pytest.raises(ValueError, match="do not fit"):
        rows_of(0, [20, 20], step_images=32)


def test_order_is_a_function_of_seed_task_and_pass() -> None:
    base = rows_of()
    assert rows_of() == base  # a re-run
    assert len(base) == sum(SHARDS) // 4 * 4
    for other in (rows_of(seed=1), rows_of(pass_index=1), rows_of(task="detection")):
        assert other != base and sorted(other) == sorted(base)


def test_shard_order_and_order_within_shards_change_between_passes() -> None:
    def within(rows, shard):
        return [r for s, r in rows if s == shard]

    a, b = rows_of(pass_index=0), rows_of(pass_index=1)
    assert within(a, 0) != within(b, 0)
    assert within(a, 0) != sorted(within(a, 0))  # not in file order


def test_steps_mix_shards() -> None:
    steps = steps_of(SPLITS[1])
    mixed = sum(len({s for s, _ in step}) > 1 for step in steps)
    assert mixed / len(steps) > 0.5


def test_skip_steps_is_the_suffix_on_any_number_of_ranks_and_reads_only_what_is_left() -> None:
    split = SPLITS[2]
    full = rows_of(1, split, task="captions", seed=3, pass_index=2)
    for skip in (0, 1, 3, 8, 20, len(full) // 16):
        part = rank_windows(SHARDS, seed=3, task="captions", pass_index=2, rank=1, rank_batches=split,
                            skip_steps=skip)
        assert [r for w in part for r in w.rows] == full[skip * 16:]
        for w in part:  # every row group read holds a row the window yields
            assert set(w.reads) == {(s, r // 16) for s, r in w.rows}
    # resumed at step 5 on 3 ranks after 5 steps on 2: the run trains exactly the remaining steps
    reference = steps_of(SPLITS[1])
    assert steps_of(SPLITS[3], skip_steps=5) == reference[5:]


def test_cap_takes_a_fixed_subset() -> None:
    assert pass_rows(SHARDS, 16, 300) == 300
    subsets = [set(rows_of(cap=300, pass_index=p)) for p in range(3)]
    assert all(len(s) == 300 for s in subsets)
    assert subsets[0] == subsets[1] == subsets[2] == {(0, r) for r in range(256)} | {(1, r) for r in range(44)}


def test_neighbours_share_a_step_as_the_docstring_says() -> None:
    """Two rows of one row group share a step with probability about (G-1)/(K*g-1) (here 31/127)."""
    shards = [256] * 16
    g_batch, hits, pairs = 32, 0, 0
    for p in range(10):
        rows = [r for w in rank_windows(shards, seed=0, task="panoptic", pass_index=p, rank=0,
                                        rank_batches=[g_batch]) for r in w.rows]
        step_of = {x: i // g_batch for i, x in enumerate(rows)}
        for s in range(0, 16, 4):
            for g in range(0, 256, 64):  # a few row groups per shard
                members = [(s, g + k) for k in range(16)]
                for x, y in itertools.combinations(members, 2):
                    pairs += 1
                    hits += step_of[x] == step_of[y]
    assert hits / pairs == pytest.approx(31 / 127, rel=0.25)


def test_rank_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="rank 2"):
        rank_windows(SHARDS, seed=0, task="panoptic", pass_index=0, rank=2, rank_batches=[4, 4])


def test_plan_of_a_paper_size_task_reads_a_few_rows_per_row_trained() -> None:
    """A 778k-row task (COCO + Objects365) at the paper's 32 on 8 ranks: the rank's share and
    nothing else, read in row groups at about 3 rows per row trained (the docstring's figure)."""
    shards = [256] * (778_000 // 256)
    w = rank_windows(shards, seed=0, task="detection", pass_index=0, rank=3, rank_batches=[4] * 8)
    rows = [r for x in w for r in x.rows]
    assert len(rows) == len(set(rows)) == sum(shards) // 32 * 4
    read = 16 * sum(len(x.reads) for x in w)
    assert 1.0 < read / len(rows) < 4.0
    one = rank_windows(shards[:200], seed=0, task="detection", pass_index=0, rank=0, rank_batches=[32])
    assert 16 * sum(len(x.reads) for x in one) == pytest.approx(sum(len(x.rows) for x in one), rel=0.02)
