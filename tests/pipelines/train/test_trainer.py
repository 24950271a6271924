"""Ray Train runs of VLOSS on the synthetic world: order, checkpoints, resume, failure, learning.

One configuration is used throughout: ``tiny`` at 64 px, 2 CPU workers, 16 images per dense
pass and a global batch of 8 (4 per worker per step), so an STT epoch is D D C | P P C (6 steps)
and 4 epochs are 24 steps; the panoptic val split is scored at every epoch end. The schedule (an
independent pure function, tested on its own) says which task each step must draw; the runs'
metric lines must follow it exactly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipelines.train.config import ClusterConfig
from pipelines.train.job import build_schedule_config, run_training
from pipelines.train.schedule import StepSchedule
from vloss.checkpoint import load_training_checkpoint
from vloss.config import resolve

pytestmark = pytest.mark.slow

EPOCHS = 4
OVERRIDES = ["input.dense_size=64", "input.caption_size=32", "train.dense_batch_size=8",
             "train.caption_batch_size=8", "train.panoptic_images=16", "train.detection_images=16",
             "train.caption_images=16", f"train.epochs={EPOCHS}", "train.log_every=1",
             "train.checkpoint_every=4", "loss.num_points=256", "model.decoder.num_queries=12",
             "optim.base_lr=0.002", "optim.text_lr=0.0002", "optim.milestone_epochs=(10, 11)",
             "train.val_batch_size=1"]


def _job(*extra):
    return resolve("tiny", OVERRIDES + list(extra))


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _schedule(job, shards) -> StepSchedule:
    return StepSchedule(build_schedule_config(job, str(shards)))


@pytest.fixture(scope="module")
def stopped_then_resumed(train_shards, tmp_path_factory):
    """Run 1 stops after 9 steps; run 2 resumes from its checkpoint (explicit path) to the end."""
    root = tmp_path_factory.mktemp("runs")
    first = run_training(_job("train.max_steps=9"), str(train_shards), str(root / "first"), ClusterConfig(workers=2))
    second = run_training(_job(), str(train_shards), str(root / "second"), ClusterConfig(workers=2),
                          resume_from=first.checkpoint.path)
    return root, first, second


def test_tasks_follow_the_schedule_and_losses_are_finite(stopped_then_resumed, train_shards):
    root, first, second = stopped_then_resumed
    schedule = _schedule(_job(), train_shards)
    assert schedule.total_steps == 6 * EPOCHS
    plan = [t for e in range(EPOCHS) for t in schedule.epoch_plan(e)]
    assert plan[:6] == ["detection", "detection", "captions", "panoptic", "panoptic", "captions"]
    rows = _metrics(root / "first") + _metrics(root / "second")
    assert [r["step"] for r in rows] == list(range(1, schedule.total_steps + 1))
    assert [r["task"] for r in rows] == plan
    for r in rows:
        keys = [k for k in r if k.startswith(r["task"] + "/")]
        want = {"captions": {"loss_con", "total"}}.get(r["task"], {"loss_cls", "loss_bce", "loss_dice", "total"})
        assert {k.split("/")[1] for k in keys} == want
        assert all(abs(r[k]) < 1e6 for k in keys)
        assert r["images_per_s"] > 0 and 0 <= r["data_wait_frac"] <= 1 and r["lr"] > 0
    assert list((root / "first" / "tensorboard").glob("events.out.tfevents.*"))


def test_checkpoint_holds_state_and_resume_continues(stopped_then_resumed, train_shards):
    root, first, second = stopped_then_resumed
    state, meta = load_training_checkpoint(first.checkpoint.path)
    assert meta["global_step"] == 9 and state["optimizer_steps"] == 9
    assert {"model", "optimizer", "lr_scheduler", "schedule"} <= set(state)
    assert meta["config"]["train"]["max_steps"] == 9
    # the resumed run starts at step 10 and ends with every step of the schedule done once
    assert _metrics(root / "second")[0]["step"] == 10
    final, meta2 = load_training_checkpoint(second.checkpoint.path)
    assert final["optimizer_steps"] == _schedule(_job(), train_shards).total_steps
    # the schedule position saved is the end of the run
    assert StepSchedule(build_schedule_config(_job(), str(train_shards))).position(meta2["global_step"]) \
        == (EPOCHS, 0)


def _fixed_batches(shards: Path, job) -> dict:
    """8 training rows per task with deterministic transforms (no jitter randomness)."""
    import numpy as np

    from pipelines.train.collate import caption_collate, dense_collate
    from pipelines.train.shards import iter_rows
    from vloss.data.images import decode_image as decode_rgb
    from vloss.data.masks import decode_rle
    from vloss.data.transforms import large_scale_jitter, pack_masks, random_resized_crop, sample_rng

    out = {}
    for task in ("panoptic", "detection", "captions"):
        rows = []
        for k, row in zip(range(8), iter_rows(shards, task)):
            img = decode_rgb(row["image"])
            rng = sample_rng(0, 0, k)
            if task == "captions":
                rows.append({"image_id": row["image_id"], "image": random_resized_crop(img, 32, rng),
                             "caption": row["captions"][0]})
                continue
            keep = [i for i in row["instances"] if not i["iscrowd"]]
            masks = np.stack([decode_rle({"size": [row["height"], row["width"]], "counts": i["segmentation"]})
                              for i in keep])
            smp = large_scale_jitter(img, masks, np.array([i["label"] for i in keep]), 64, rng, 0.4, 0.4, False)
            rows.append({"image_id": row["image_id"], "image": smp.image, "masks": pack_masks(smp.masks),
                         "num_masks": len(smp.labels), "labels": smp.labels.astype(np.int32).tobytes()})
        batch = {key: np.array([r[key] for r in rows], dtype=object) for key in rows[0]}
        batch["image"] = np.stack([r["image"] for r in rows])
        out[task] = (caption_collate if task == "captions" else dense_collate)(batch)
    return out


def _losses(model, job, vocabs, batches) -> dict:
    import torch

    from vloss.losses import ContrastiveLoss, SetCriterion

    model.eval()
    res = {}
    with torch.no_grad():
        for task, b in batches.items():
            if task == "captions":
                img = model(b["images"])["img_embed"]
                loss = ContrastiveLoss("clip", gather=False)(img, model.encode_captions(b["captions"]),
                                                             model.logit_scale_img_text())
            else:
                out = model(b["images"], model.class_embeddings(vocabs[task], job.model.text.templates))
                crit = SetCriterion(job.loss, generator=torch.Generator().manual_seed(0))
                loss = crit(out, b["targets"], positive_only=task == "detection")
                loss = {k: v for k, v in loss.items() if k in ("loss_cls", "loss_bce", "loss_dice")}
                if task == "detection":
                    # positive-only classification: the term the detection task optimises
                    loss["loss_cls"] = crit(out, b["targets"], positive_only=True)["loss_cls"]
            res.update({f"{task}/{k}": float(v) for k, v in loss.items()})
    return res


def test_every_loss_term_falls(stopped_then_resumed, train_shards):
    """The trained model beats its own initialisation on every term, on fixed training batches."""
    import torch

    from pipelines.train.shards import read_vocabulary
    from vloss.model import VLOSS

    _, _, second = stopped_then_resumed
    job = _job()
    torch.manual_seed(job.seed)  # the workers' initialisation
    initial = VLOSS(job.model)
    trained = VLOSS(job.model)
    trained.load_state_dict(load_training_checkpoint(second.checkpoint.path)[0]["model"])
    vocabs = {t: read_vocabulary(train_shards, t).names for t in ("panoptic", "detection")}
    batches = _fixed_batches(train_shards, job)
    before, after = _losses(initial, job, vocabs, batches), _losses(trained, job, vocabs, batches)
    assert set(before) == {f"{t}/{k}" for t in ("panoptic", "detection") for k in ("loss_cls", "loss_bce",
                                                                                   "loss_dice")} | {"captions/loss_con"}
    for k in before:
        assert after[k] < before[k], f"{k}: {before[k]:.4f} -> {after[k]:.4f}"


def _worker_dies_once_at_step_7(step: int, rank: int, world_size: int, store: str | None) -> None:
    """A step hook (the fault drill, installed by this test): worker rank 1 exits before step 7, once
    per run (a marker file in the run's store says it already did)."""
    if step != 7 or rank != min(1, world_size - 1) or store is None:
        return
    marker = Path(store) / ".fail_hook_fired"
    if not marker.exists():
        marker.touch()
        os._exit(1)


def test_worker_crash_recovers_with_the_same_number_of_steps(train_shards, tmp_path, stopped_then_resumed):
    import sys

    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the hook travels to the workers by value
    run = tmp_path / "crash"
    result = run_training(_job(), str(train_shards), str(run), ClusterConfig(workers=2, max_failures=1),
                          step_hooks=(_worker_dies_once_at_step_7,))
    assert (run / ".fail_hook_fired").exists()  # the worker really died once
    state, meta = load_training_checkpoint(result.checkpoint.path)
    _, _, second = stopped_then_resumed
    uninterrupted, _ = load_training_checkpoint(second.checkpoint.path)
    assert state["optimizer_steps"] == uninterrupted["optimizer_steps"] == 6 * EPOCHS
    # the restart resumed from the last checkpoint before the crash and logged its steps again; the
    # driver's metrics.jsonl keeps each step once, as trained by the run that continued (issue #28)
    assert [r["step"] for r in _metrics(run)] == list(range(1, 6 * EPOCHS + 1))


def test_validation_every_epoch_keeps_the_best_checkpoint(stopped_then_resumed, synthetic_world, tmp_path):
    """Rank 0 scores PQ on the panoptic val split at every epoch end and at the end of a run; the best
    checkpoint is kept beside the latest ones, named in result.json, and re-scoring it with the
    evaluation job (its own code path: Ray Data predictor, prediction files, pq_compute) gives the
    same PQ."""
    from pipelines.evaluate.config import EvalJobConfig
    from pipelines.evaluate.job import run_evaluation

    root, first, second = stopped_then_resumed
    first_rows, second_rows = _metrics(root / "first"), _metrics(root / "second")
    # epoch ends are steps 6, 12, 18, 24; the first run also validates where it stops (step 9)
    assert [r["step"] for r in first_rows if "val/pq" in r] == [6, 9]
    assert [r["step"] for r in second_rows if "val/pq" in r] == [12, 18, 24]
    for r in first_rows + second_rows:
        if "val/pq" in r:
            assert 0.0 <= r["val/pq"] <= 1.0 and 0.0 <= r["val/pq_th"] <= 1.0 and 0.0 <= r["val/pq_st"] <= 1.0
    result = json.loads((root / "second" / "result.json").read_text())
    best = result["best"]
    scored = [r for r in second_rows if "val/pq" in r]
    top = max(r["val/pq"] for r in scored)
    assert best["val/pq"] == top and best["step"] == next(r["step"] for r in scored if r["val/pq"] == top)
    assert result["best_checkpoint"] == best["path"] == str(root / "second" / "best_checkpoint")
    assert result["checkpoint"] != result["best_checkpoint"]
    _, meta = load_training_checkpoint(best["path"])
    assert meta["global_step"] == best["step"]
    out = run_evaluation(EvalJobConfig(task="coco_panoptic", checkpoint=best["path"], out=str(tmp_path / "ev"),
                                       data=str(synthetic_world), batch_size=1, overlays=0, pq_workers=1))
    assert out["metrics"]["All"]["pq"] == pytest.approx(best["val/pq"], abs=1e-9)


def test_a_rerun_into_an_existing_run_is_the_same_run_or_refused(stopped_then_resumed, train_shards):
    """Defect 2 of issue #15: a re-run into an existing --out silently reused the old state (an
    explicit --resume ignored, a changed learning rate recorded but not used). Both are refused
    before any training, naming what differs."""
    from pipelines.common.output_set import OutputConflictError

    root, first, second = stopped_then_resumed
    with pytest.raises(OutputConflictError, match=r"recipe.optim.base_lr: 0.002 -> 0.0005"):
        run_training(_job("optim.base_lr=0.0005"), str(train_shards), str(root / "second"), ClusterConfig(workers=2))
    with pytest.raises(OutputConflictError, match=r"--resume .* would be ignored"):
        run_training(_job(), str(train_shards), str(root / "second"), ClusterConfig(workers=2),
                     resume_from=first.checkpoint.path)
    with pytest.raises(OutputConflictError, match=r"--resume none refuses to continue it"):
        run_training(_job(), str(train_shards), str(root / "second"), ClusterConfig(workers=2), resume="none")
    # the batches are global (issue #24 item 6): the worker count is not part of the plan, a changed
    # global batch is
    with pytest.raises(OutputConflictError, match=r"recipe.train.dense_batch_size: 8 -> 4"):
        run_training(_job("train.dense_batch_size=4", "train.caption_batch_size=4"), str(train_shards),
                     str(root / "second"), ClusterConfig(workers=1))
    # issue #28 item 1: class names swapped in vocab.json are another plan, not a silent retrain
    import shutil

    edited = root / "edited_shards"
    shutil.copytree(train_shards, edited)
    vocab = next(edited.glob("gen-*/panoptic/vocab.json"))
    data = json.loads(vocab.read_text())
    data["categories"][0]["name"], data["categories"][1]["name"] = (data["categories"][1]["name"],
                                                                    data["categories"][0]["name"])
    vocab.write_text(json.dumps(data))
    with pytest.raises(OutputConflictError, match=r"vocabularies\.panoptic"):
        run_training(_job(), str(edited), str(root / "second"), ClusterConfig(workers=2))


def test_a_finished_run_rerun_is_complete_and_trains_nothing(stopped_then_resumed, train_shards, capsys):
    """Issue #21 item 9: the same command on a finished run (the whole schedule, or a
    train.max_steps trial) reports it complete and trains nothing."""
    root, first, second = stopped_then_resumed
    for run, extra in ((root / "second", ()), (root / "first", ("train.max_steps=9",))):
        before = (run / "metrics.jsonl").read_text()
        assert run_training(_job(*extra), str(train_shards), str(run), ClusterConfig(workers=2)) is None
        assert "this run is complete" in capsys.readouterr().out
        assert (run / "metrics.jsonl").read_text() == before


def test_a_damaged_latest_checkpoint_falls_back_and_partial_folders_are_removed(train_shards, tmp_path, capsys):
    """Issue #28 item 5: the latest checkpoint truncated (a full disk, a kill mid-write) is skipped
    for the newest complete one, a partial checkpoint folder is removed, the driver says at which
    step it continues, and metrics.jsonl ends with every step once."""
    run = tmp_path / "run"
    run_training(_job("train.max_steps=8", "train.eval_every=0"), str(train_shards), str(run),
                 ClusterConfig(workers=2))
    ckpts = sorted(p for p in (run / "ray_train").iterdir() if p.name.startswith("checkpoint_") and p.is_dir())
    steps = [json.loads((p / "meta.json").read_text())["global_step"] for p in ckpts]
    assert steps[-1] == 8 and len(steps) >= 2
    state = ckpts[-1] / "state.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    partial = run / "ray_train" / "checkpoint_9999-12-31_23-59-59.000000"
    partial.mkdir()
    (partial / "meta.json").write_text("{}")
    capsys.readouterr()
    result = run_training(_job("train.max_steps=12", "train.eval_every=0"), str(train_shards), str(run),
                          ClusterConfig(workers=2))
    out = capsys.readouterr().out
    assert "removed the partial checkpoint folder" in out and not partial.exists()
    assert "is damaged" in out and f"at step {steps[-2]}" in out
    _, meta = load_training_checkpoint(result.checkpoint.path)
    assert meta["global_step"] == 12
    assert [r["step"] for r in _metrics(run)] == list(range(1, 13))


def test_a_damaged_ray_snapshot_is_set_aside_and_the_run_continues(train_shards, tmp_path, capsys):
    """Issue #28 item 5: Ray Train's run snapshot truncated (Ray writes it in place) no longer
    stops the run: it is set aside with one line and the run continues from the newest complete
    checkpoint folder, every step logged once."""
    run = tmp_path / "run"
    run_training(_job("train.max_steps=8", "train.eval_every=0"), str(train_shards), str(run),
                 ClusterConfig(workers=2))
    snap = run / "ray_train" / "checkpoint_manager_snapshot.json"
    snap.write_bytes(snap.read_bytes()[: snap.stat().st_size // 2])
    capsys.readouterr()
    result = run_training(_job("train.max_steps=12", "train.eval_every=0"), str(train_shards), str(run),
                          ClusterConfig(workers=2))
    out = capsys.readouterr().out
    assert "run snapshot" in out and "is damaged: it cannot be read" in out and "at step 8" in out
    assert (run / "ray_train" / "checkpoint_manager_snapshot.json.damaged-1").exists()
    _, meta = load_training_checkpoint(result.checkpoint.path)
    assert meta["global_step"] == 12
    assert [r["step"] for r in _metrics(run)] == list(range(1, 13))
