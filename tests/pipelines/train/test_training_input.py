"""Training input: seeded shuffled passes read by Ray Data, bit-equal on a re-run, damaged shards
refused where they are read, and a 2-worker run resumed mid-pass trains on exactly the batches of
an uninterrupted run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipelines.train.datasets import ShardReadError, pass_dataset, read_row_group, task_shards
from pipelines.train.pass_plan import data_seed
from vloss.config import resolve

pytestmark = pytest.mark.slow


def _rows(shards, cfg, **kw) -> list[dict]:
    args = dict(seed=0, pass_index=0, rank=0, rank_batches=[2])
    args.update(kw)
    return list(pass_dataset(shards, cfg, **args).iter_rows())


def test_a_pass_is_bit_equal_on_a_rerun_and_changes_with_pass_and_seed(train_shards, ray_session) -> None:
    shards = task_shards(str(train_shards), ["panoptic"])["panoptic"]
    cfg = resolve("tiny", ["input.dense_size=64"]).input
    a, b = _rows(shards, cfg), _rows(shards, cfg)
    assert [r["image_id"] for r in a] == [r["image_id"] for r in b]
    assert all(np.array_equal(x["image"], y["image"]) and x["masks"] == y["masks"] for x, y in zip(a, b))
    ids = [r["image_id"] for r in a]
    assert ids != sorted(ids)  # shuffled, not in shard order
    other_pass = _rows(shards, cfg, pass_index=1)
    assert [r["image_id"] for r in other_pass] != ids and sorted(r["image_id"] for r in other_pass) == sorted(ids)
    # the same image in another pass gets another augmentation
    first = {r["image_id"]: r["image"] for r in a}
    assert any(not np.array_equal(first[r["image_id"]], r["image"]) for r in other_pass)
    assert [r["image_id"] for r in _rows(shards, cfg, seed=data_seed(1, 0))] != ids
    assert [r["image_id"] for r in _rows(shards, cfg, seed=data_seed(0, 1))] != ids


def test_a_resumed_pass_yields_the_rest_of_the_same_pass(train_shards, ray_session) -> None:
    shards = task_shards(str(train_shards), ["captions"])["captions"]
    cfg = resolve("tiny", ["input.caption_size=32"]).input
    full = _rows(shards, cfg, pass_index=3, rank=1, rank_batches=[2, 2])
    rest = _rows(shards, cfg, pass_index=3, rank=1, rank_batches=[2, 2], skip_steps=3)
    assert [r["image_id"] for r in rest] == [r["image_id"] for r in full[6:]]
    assert all(np.array_equal(x["image"], y["image"]) and x["caption"] == y["caption"]
               for x, y in zip(rest, full[6:]))
    other_rank = _rows(shards, cfg, pass_index=3, rank=0, rank_batches=[2, 2])
    assert not {r["image_id"] for r in other_rank} & {r["image_id"] for r in full}


def test_a_flipped_byte_is_refused_by_the_reader(train_shards, tmp_path) -> None:
    root = tmp_path / "shards"
    shutil.copytree(train_shards, root)
    shards = task_shards(str(root), ["panoptic"])["panoptic"]
    path = root / shards.names[0]
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x10  # inside the data pages (image bytes), far from the footer
    path.write_bytes(bytes(data))
    # names and sizes still match the manifest: the start-up check passes, the read refuses
    assert task_shards(str(root), ["panoptic"])["panoptic"].names == shards.names
    groups = -(-shards.rows[0] // shards.row_group_rows)
    with pytest.raises(ShardReadError, match=shards.names[0]):
        for g in range(groups):
            read_row_group(str(root), shards.names[0], g)
    with pytest.raises(ShardReadError, match="sha256"):
        read_row_group(str(root), shards.names[0], 0, verify_sha=shards.sha256[0])


def test_a_two_worker_run_resumed_on_one_worker_trains_on_exactly_the_same_batches(train_shards, tmp_path) -> None:
    """The data order does not depend on the workers: a run stopped on 2 workers and resumed on 1
    (what an elastic run does when a node goes) trains every step on the images of an uninterrupted
    2-worker run, in the same order (rank 0's share, then rank 1's)."""
    from pipelines.train.config import ClusterConfig
    from pipelines.train.job import run_training

    overrides = ["input.dense_size=64", "input.caption_size=32", "train.dense_batch_size=4",
                 "train.caption_batch_size=4", "train.panoptic_images=16", "train.detection_images=16",
                 "train.caption_images=12", "train.epochs=2", "train.log_every=1", "train.checkpoint_every=100",
                 "train.checkpoint_sub_epochs=false", "train.eval_every=0", "train.record_batches=true",
                 "model.decoder.num_queries=8", "loss.num_points=64"]

    def batches(run: Path) -> dict[int, dict]:
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return {b["step"]: b for r in rows for b in r.get("batches", [])}

    whole = tmp_path / "whole"
    run_training(resolve("tiny", overrides), str(train_shards), str(whole), ClusterConfig(workers=2))
    # 16 dense images / global 4 = 4 steps a pass; STT epoch: D D C D D C | P P C P P C (12 steps);
    # stopping after 7 steps leaves detection pass 1 after its first batch and captions mid-pass
    first = tmp_path / "first"
    stopped = run_training(resolve("tiny", overrides + ["train.max_steps=7"]), str(train_shards), str(first),
                           ClusterConfig(workers=2))
    second = tmp_path / "second"
    run_training(resolve("tiny", overrides), str(train_shards), str(second), ClusterConfig(workers=1),
                 resume_from=stopped.checkpoint.path)
    expected = batches(whole)
    got = {**batches(first), **batches(second)}
    assert sorted(expected) == list(range(1, 25)) and sorted(got) == sorted(expected)
    assert all(len(b["image_ids"]) == 2 for b in batches(first).values())
    assert all(len(b["image_ids"]) == 1 for b in batches(second).values())  # one worker, the whole step

    def flat(b: dict) -> tuple[str, list[int]]:
        return b["task"], [i for rank in b["image_ids"] for i in rank]

    assert [flat(got[s]) for s in sorted(got)] == [flat(expected[s]) for s in sorted(expected)]
    # within each step the two ranks trained on different images, two each
    for b in expected.values():
        r0, r1 = b["image_ids"]
        assert len(r0) == len(r1) == 2 and not set(r0) & set(r1)
    # within a pass of a dense task the ranks' rows are disjoint and no image repeats
    det = [b for s, b in sorted(expected.items()) if b["task"] == "detection"]
    for p in range(0, len(det), 4):
        ids = [i for b in det[p:p + 4] for r in b["image_ids"] for i in r]
        assert len(ids) == len(set(ids)) == 16
    # passes differ in order
    assert [b["image_ids"] for b in det[:4]] != [b["image_ids"] for b in det[4:8]]
