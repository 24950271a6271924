"""A stopped run names the worker's exception in one line (issue #28 item 4): Ray Train's own
message is a per-rank traceback snippet whose first line was empty ("[Rank 0 Error Snippet]:.")."""

from __future__ import annotations

import shutil
import traceback

import pytest

from pipelines.train.config import ClusterConfig
from pipelines.train.failures import failure_cause, stopped_message


def _worker_group_error(exc: BaseException):
    from ray.train import WorkerGroupError
    from ray.train.v2._internal.exceptions import UserExceptionWithTraceback

    try:
        raise exc
    except BaseException as e:  # noqa: BLE001 - the traceback text Ray keeps
        tb = "".join(traceback.format_exception(e))
    wrapped = UserExceptionWithTraceback(exc, tb)
    return WorkerGroupError(f"[Rank 1 Error Snippet]:\n{tb}", {1: wrapped})


def test_the_cause_is_the_workers_exception_not_the_snippet():
    err = _worker_group_error(ValueError("objects365 image 7 (a.jpg): decoded size (10, 12) differs from (12, 10)"))
    cause, lost = failure_cause(err)
    assert cause == "rank 1: ValueError: objects365 image 7 (a.jpg): decoded size (10, 12) differs from (12, 10)"
    assert not lost
    msg = stopped_message(err, ClusterConfig(workers=2), "/tmp/run")
    assert msg.startswith("training stopped: rank 1: ValueError: objects365 image 7")
    assert "\n" not in msg and "Error Snippet" not in msg and "after fixing the cause" in msg


def test_a_lost_worker_keeps_the_advice_about_placing_workers():
    from ray.train.v2._internal.exceptions import WorkerHealthCheckFailedError

    err = _worker_group_error(WorkerHealthCheckFailedError("worker on node abc stopped answering", RuntimeError("x")))
    cause, lost = failure_cause(err)
    assert lost and cause.startswith("rank 1: WorkerHealthCheckFailedError")
    assert "once the cluster can place 2 workers" in stopped_message(err, ClusterConfig(workers=2), "/tmp/run")


@pytest.mark.slow
def test_a_damaged_shard_stops_training_with_one_line_naming_it(train_shards, tmp_path):
    """A flipped byte in a training shard (same size, so the start-up check passes) is refused by
    the worker that reads it, and the driver's one line names the error and the file."""
    from pipelines.train.datasets import task_shards
    from pipelines.train.failures import TrainingStoppedError
    from pipelines.train.job import run_training
    from vloss.config import resolve

    root = tmp_path / "shards"
    shutil.copytree(train_shards, root)
    shards = task_shards(str(root), ["panoptic", "detection", "captions"])
    for t in shards.values():  # damage every shard of every task: whatever the first step reads
        for name in t.names:
            path = root / name
            data = bytearray(path.read_bytes())
            data[len(data) // 3] ^= 0x10
            path.write_bytes(bytes(data))
    job = resolve("tiny", ["input.dense_size=64", "input.caption_size=32", "train.dense_batch_size=4",
                           "train.caption_batch_size=4", "train.epochs=1", "train.eval_every=0",
                           "model.decoder.num_queries=8", "loss.num_points=64"])
    with pytest.raises(TrainingStoppedError) as info:
        run_training(job, str(root), str(tmp_path / "run"), ClusterConfig(workers=1, max_failures=0))
    msg = str(info.value)
    assert "\n" not in msg
    assert "ShardReadError" in msg and "cannot be read back as written" in msg and str(root) in msg
