"""The actor-pool stage's contract, without Ray: one model call per batch; when it fails, image by
image, so that exactly the failing image is reported and the others keep their outputs."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.common.actor_pool import ActorPoolConfig, ActorStage


class _Doubler(ActorStage):
    passthrough = ("index",)
    outputs = {"value": -1, "note": ""}
    what = "doubling"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def prepare(self, batch, i):
        return int(batch["x"][i])

    def run(self, inputs):
        self.calls.append(len(inputs))
        if 13 in inputs:
            raise RuntimeError("unlucky")
        return [2 * x for x in inputs]

    def encode(self, output, batch, i):
        if output == 0:
            raise ValueError("zero")
        return {"value": output, "note": f"row {i}"}


def _batch(xs, errors=None):
    n = len(xs)
    return {"index": np.arange(n), "x": np.array(xs), "error": np.array(errors or [""] * n, dtype=object)}


def test_a_failing_image_is_isolated_and_named():
    stage = _Doubler()
    out = stage(_batch([1, 13, 3, 0], ["", "", "", ""]))
    assert list(out["value"]) == [2, -1, 6, -1]
    assert list(out["error"]) == ["", "doubling failed: RuntimeError: unlucky", "",
                                  "doubling failed: ValueError: zero"]
    assert list(out["note"]) == ["row 0", "", "row 2", ""]
    assert stage.calls == [4, 1, 1, 1, 1]  # the batch, then image by image


def test_decode_failures_pass_through_without_a_model_call():
    stage = _Doubler()
    out = stage(_batch([5, 6], ["x.jpg: OSError: missing", ""]))
    assert list(out["error"]) == ["x.jpg: OSError: missing", ""] and list(out["value"]) == [-1, 12]
    assert stage.calls == [1] and out["error"].dtype == object


def test_pool_defaults_follow_the_gpus():
    assert ActorPoolConfig().actor_cpus == 0.5 and ActorPoolConfig(gpus_per_actor=1).actor_cpus == 4.0
    assert ActorPoolConfig(num_actors=3).decode_task_count == 6
    with pytest.raises(ValueError, match="pool.num_actors must be positive"):
        ActorPoolConfig(num_actors=0)
