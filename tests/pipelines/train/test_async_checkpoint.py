"""Checkpoints do not stall training (issue #24 item 3): with Ray Train's asynchronous upload the
steps after a checkpoint run while it is still being written to a slow store, Ray removes the local
copy, and a re-run continues from the latest complete checkpoint; with ``cluster.checkpoint_upload=sync``
the same steps wait.

The slow store is a local folder behind a ``pyarrow.fs`` handler whose checkpoint writes each take
``DELAY_S`` and are logged with their end time; the test compares the order of those times with the
time stamps of the metric rows (no timing threshold: a step either ran before the upload ended or not).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from vloss.config import resolve

pytestmark = pytest.mark.slow

DELAY_S = 2.0


class SlowCheckpointStore(pafs.FileSystemHandler):
    """The local filesystem, except that opening a file under a ``checkpoint_*`` folder for writing
    takes ``delay`` seconds (a store far away); each such write appends ``folder end-time`` to ``log``."""

    def __init__(self, log: str, delay: float) -> None:
        self.log, self.delay, self.fs = log, delay, pafs.LocalFileSystem()

    def __reduce__(self):  # Ray pickles the run's filesystem to its workers
        return SlowCheckpointStore, (self.log, self.delay)

    def _slow(self, path: str) -> None:
        parts = [p for p in path.split("/")[:-1] if p.startswith("checkpoint_")]  # files inside a checkpoint
        if parts:
            time.sleep(self.delay)
            with open(self.log, "a") as f:
                f.write(f"{parts[0]} {time.time()}\n")

    def open_output_stream(self, path, metadata):
        self._slow(path)
        return self.fs.open_output_stream(path, metadata=metadata)

    def get_type_name(self):
        return "slow-checkpoint-store"

    def normalize_path(self, path):
        return self.fs.normalize_path(path)

    def equals(self, other):
        return isinstance(other, SlowCheckpointStore) and other.log == self.log

    def get_file_info(self, paths):
        return self.fs.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.fs.get_file_info(selector)

    def create_dir(self, path, recursive):
        self.fs.create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        self.fs.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self.fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        raise OSError("not on a test store")

    def delete_file(self, path):
        self.fs.delete_file(path)

    def move(self, src, dest):
        self.fs.move(src, dest)

    def copy_file(self, src, dest):
        self._slow(dest)
        self.fs.copy_file(src, dest)

    def open_input_stream(self, path):
        return self.fs.open_input_stream(path)

    def open_input_file(self, path):
        return self.fs.open_input_file(path)

    def open_append_stream(self, path, metadata):
        return self.fs.open_append_stream(path, metadata=metadata)


OVERRIDES = ["input.dense_size=64", "input.caption_size=32", "train.dense_batch_size=2", "train.caption_batch_size=2",
             "train.panoptic_images=8", "train.detection_images=8", "train.caption_images=8", "train.epochs=1",
             "train.log_every=1", "train.checkpoint_every=2", "train.checkpoint_sub_epochs=false",
             "train.eval_every=0", "model.decoder.num_queries=8", "loss.num_points=64", "train.schedule=panoptic",
             "train.caption_ratio=0"]


def _run(train_shards: Path, run: Path, mode: str, extra: list[str] = ()) -> tuple[dict[int, float], list[float]]:
    """Train with the slow store; returns (step -> time its metric row was made, end time of the first
    checkpoint's upload)."""
    from pipelines.train.config import ClusterConfig
    from pipelines.train.job import run_training

    log = str(run) + ".uploads"
    store = pafs.PyFileSystem(SlowCheckpointStore(log, DELAY_S))
    run_training(resolve("tiny", OVERRIDES + list(extra)), str(train_shards), str(run),
                 ClusterConfig(workers=1, checkpoint_upload=mode), storage_filesystem=store)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    ends: dict[str, float] = {}
    for line in Path(log).read_text().splitlines():
        folder, t = line.split()
        ends[folder] = max(ends.get(folder, 0.0), float(t))
    return {r["step"]: r["time"] for r in rows}, sorted(ends.values())


def test_steps_run_while_the_checkpoint_uploads_and_a_re_run_continues_from_it(train_shards, tmp_path,
                                                                                capfd) -> None:
    import tempfile

    staged = {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("vloss-ckpt-")}
    # 8 images / 2 = 4 steps; stopped after 3 (train.max_steps): checkpoints after steps 2 and 3
    run = tmp_path / "async"
    steps, uploads = _run(train_shards, run, "async", ["train.max_steps=3"])
    assert sorted(steps) == [1, 2, 3] and len(uploads) == 2
    assert steps[3] < uploads[0], "step 3 waited for step 2's checkpoint upload"
    # Ray removed the local staging copies (tempfile's vloss-ckpt-*) after their upload
    assert {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("vloss-ckpt-")} <= staged
    # the re-run of the whole schedule continues from the latest complete checkpoint (step 3)
    capfd.readouterr()
    steps, _ = _run(train_shards, run, "async")
    assert "at step 3" in capfd.readouterr().out
    assert sorted(steps) == [1, 2, 3, 4]  # metrics.jsonl: each step once, step 4 trained by the re-run


def test_with_sync_uploads_the_next_step_waits(train_shards, tmp_path) -> None:
    steps, uploads = _run(train_shards, tmp_path / "sync", "sync", ["train.max_steps=3"])
    assert steps[3] > uploads[0], "with sync uploads step 3 runs after step 2's checkpoint is stored"
