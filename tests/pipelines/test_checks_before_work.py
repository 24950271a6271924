"""Every job checks what it can before any work: resources, checkpoints, vocabularies (issue #15).

Each test reproduces a defect found by drilling the jobs: an over-request that hung forever, a
bad checkpoint that failed only inside Ray actors, a missing --resume found after a worker-group
restart, an evaluation of an empty vocabulary.
"""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path

import pytest

from pipelines.common.actor_pool import ActorPoolConfig
from pipelines.common.resources import ResourceError, check_fits
from pipelines.evaluate.config import EvalJobConfig
from pipelines.evaluate.job import run_evaluation
from pipelines.pseudo_masks.config import PseudoMaskJobConfig
from pipelines.pseudo_masks.job import run_pseudo_masks
from vloss.teacher.config import TeacherConfig


class _Payload:
    """A pickle that would create a file when unpickled by a trusting loader."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _crafted_pickle(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "payload_ran"
    path = tmp_path / "weights.pth"
    with open(path, "wb") as f:
        pickle.dump({"model": _Payload(marker)}, f)
    return path, marker


def _box_job(source, out, **kw) -> PseudoMaskJobConfig:
    return PseudoMaskJobConfig(annotations=str(source.annotations), images=str(source.images), out=str(out),
                               teacher=TeacherConfig(backend="box"), **kw)


@pytest.mark.slow
def test_over_requests_fail_at_once_on_a_fixed_cluster(ray_session, synthetic_source, synthetic_world, tmp_path,
                                                       tiny_weights_file):
    """On the embedded 2-CPU Ray: 4 teacher actors, a GPU actor, 4 predictor actors, 4 training workers."""
    from jobs.train import main as train_main

    cases = [
        (lambda: run_pseudo_masks(_box_job(synthetic_source, tmp_path / "a", pool=ActorPoolConfig(num_actors=4))),
         "4 teacher actors x 0.5 CPU.*needs 2.25 CPU.*cluster has 2 CPU"),
        (lambda: run_pseudo_masks(_box_job(synthetic_source, tmp_path / "b", pool=ActorPoolConfig(gpus_per_actor=1))),
         "x 1 GPU.*needs 4.25 CPU, 1 GPU at once, but the cluster has 2 CPU, 0 GPU"),
        (lambda: run_evaluation(EvalJobConfig(task="lvis", checkpoint=str(tiny_weights_file), out=str(tmp_path / "c"),
                                              data=str(synthetic_world), pool=ActorPoolConfig(num_actors=4))),
         "4 predictor actors x 0.5 CPU.*needs 2.25 CPU"),
    ]
    for run, message in cases:
        t0 = time.perf_counter()
        with pytest.raises(ResourceError, match=message):
            run()
        assert time.perf_counter() - t0 < 30  # immediate, not a hang
    t0 = time.perf_counter()
    assert train_main(["--workers", "4", "--out", str(tmp_path / "d"), "--set", "train.max_steps=1"]) == 2
    assert time.perf_counter() - t0 < 30
    assert not (tmp_path / "d" / "shards").exists()  # refused before any shard was built


def test_a_joined_cluster_waits_a_bounded_time_then_fails_the_same_way(ray_session):
    t0 = time.perf_counter()
    with pytest.raises(ResourceError, match=r"needs 64 CPU.*after waiting 2 s for the autoscaler"):
        check_fits({"CPU": 64}, "a test request", wait_s=2, poll_s=0.5)
    assert 2 <= time.perf_counter() - t0 < 15
    check_fits({"CPU": 1}, "a request that fits", wait_s=0)


def test_a_pickle_that_would_run_code_is_refused_everywhere(tmp_path, synthetic_source):
    from vloss.checkpoint import load_model_checkpoint

    path, marker = _crafted_pickle(tmp_path)
    with pytest.raises(ValueError, match=r"weights\.pth: not a checkpoint this job can load safely"):
        load_model_checkpoint(path)
    cfg = PseudoMaskJobConfig(annotations=str(synthetic_source.annotations), images=str(synthetic_source.images),
                              out=str(tmp_path / "pm"), checkpoint=str(path),
                              teacher=TeacherConfig(backend="maskrcnn", arch="maskrcnn_resnet18_fpn"))
    with pytest.raises(ValueError, match=r"weights\.pth"):
        run_pseudo_masks(cfg)  # checked in the driver, before any Ray work
    assert not (tmp_path / "pm").exists()
    assert not marker.exists()  # nothing in the file ran


def test_evaluation_checkpoint_errors_name_the_file(tmp_path, synthetic_world):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match=r"junk\.pt: not a checkpoint"):
        run_evaluation(EvalJobConfig(task="lvis", checkpoint=str(junk), out=str(tmp_path / "e"),
                                     data=str(synthetic_world)))


def test_an_empty_vocabulary_is_refused(tmp_path, synthetic_world, tiny_weights_file):
    gt = json.loads((synthetic_world / "lvis" / "lvis_v1_val.json").read_text())
    gt["categories"], gt["annotations"] = [], []
    for im in gt["images"]:
        im["neg_category_ids"], im["not_exhaustive_category_ids"] = [], []
    path = tmp_path / "empty.json"
    path.write_text(json.dumps(gt))
    with pytest.raises(ValueError, match="no categories"):
        run_evaluation(EvalJobConfig(task="lvis", checkpoint=str(tiny_weights_file), out=str(tmp_path / "e"),
                                     gt_json=str(path), images=str(synthetic_world / "lvis")))


def test_resume_from_a_missing_checkpoint_fails_before_ray(tmp_path, capsys):
    from jobs.train import main as train_main

    t0 = time.perf_counter()
    assert train_main(["--out", str(tmp_path / "r"), "--resume", str(tmp_path / "nope")]) == 2
    assert "--resume" in capsys.readouterr().err and time.perf_counter() - t0 < 10
    assert not (tmp_path / "r").exists()
