"""The paper's recipes, the dry-run plan and the checks that keep a cluster run from going wrong."""

from __future__ import annotations

import hashlib
import json
import math
import os

import pytest

from jobs.train import main as train_main
from pipelines.train.config import ClusterConfig
from pipelines.train.plan import PAPER_SIZES, dataset_sizes, make_plan, schedule_config
from pipelines.train.schedule import StepSchedule
from vloss.config import job_preset, resolve
from vloss.recipes import RECIPES, build_recipe, get_recipe

SMALL = ["input.dense_size=64", "input.caption_size=32", "train.dense_batch_size=4", "train.caption_batch_size=4",
         "loss.num_points=128", "model.decoder.num_queries=8", "train.max_steps=2", "train.eval_every=0",
         "train.log_every=1"]


# ---- every recipe: its switches, and two real training steps with the tiny network ----------------

@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe_switches_are_the_rows(name):
    r = get_recipe(name)
    cfg = build_recipe(name)
    kinds = [o.split("=", 1)[1] for o in r.overrides if o.startswith("model.encoder.kind=")]
    assert len(kinds) == 1 and cfg.model.encoder.kind == kinds[0]  # every row names its encoder
    uses = {"objects365": cfg.train.schedule != "panoptic", "coco_captions": cfg.train.caption_ratio > 0}
    for data, used in uses.items():
        assert (data in r.data) == used, (name, data)
    assert cfg.train.require_pretrained  # every paper-scale recipe needs the pretrained weights
    if cfg.train.caption_ratio > 0:
        assert cfg.model.decoder.global_query


def test_recipe_groups_match_the_paper():
    rows = {(r.table, r.row) for r in RECIPES.values()}
    for table, n in (("Table 1", 2), ("Table 3", 5), ("Table 4", 3), ("Table 5", 3), ("Table 6", 2)):
        assert sum(t == table for t, _ in rows) == n, table
    assert build_recipe("t4_pretrain").train.schedule == "pretrain"
    assert build_recipe("t3_o365").loss.positive_only_detection is False
    assert build_recipe("t6_filip").loss.contrastive == "filip"
    assert build_recipe("t1_mask2former_clip").model.decoder.global_query is False


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RECIPES))
def test_every_recipe_trains_two_steps_on_the_synthetic_world(name, train_shards, ray_session, tmp_path):
    """The recipe's switches over the tiny network, two steps through the real Trainer (one process)."""
    from pipelines.train.datasets import task_shards
    from pipelines.train.shards import read_vocabulary
    from pipelines.train.trainer import Trainer
    from pipelines.train.worker import local_runtime

    job = build_recipe(name, "tiny", SMALL)
    schedule = StepSchedule(schedule_config(job, dataset_sizes(job, shard_root=str(train_shards))))
    tasks = schedule.config.tasks_used()
    shards = task_shards(str(train_shards), tasks)
    vocabs = {t: read_vocabulary(train_shards, t).names for t in tasks if t != "captions"}
    Trainer(job, schedule, vocabs, local_runtime(job, shards), run_dir=str(tmp_path)).fit()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert [r["task"] for r in rows] == [t for _, _, t in list(schedule)[:2]]
    for r in rows:
        total = r[f"{r['task']}/total"]
        assert math.isfinite(total) and total > 0


# ---- checks before any work -------------------------------------------------------------------------

def test_paper_and_baseline_refuse_to_start_without_weights(tmp_path, capsys):
    for preset in ("paper", "baseline"):
        rc = train_main(["--config", preset, "--dry-run", "--sizes", "paper", "--out", str(tmp_path / preset)])
        err = capsys.readouterr().err
        assert rc == 2
        for text in ("model.backbone.weights", "model.text.weights", "Swin-T ImageNet", "open_clip",
                     ".safetensors", "--from-scratch"):
            assert text in err, (preset, text)
        assert not (tmp_path / preset / "plan.json").exists()
    # the explicit way to train without them, recorded in the plan's config
    assert train_main(["--config", "paper", "--dry-run", "--sizes", "paper", "--from-scratch",
                       "--out", str(tmp_path / "scratch")]) == 0
    plan = json.loads((tmp_path / "scratch" / "plan.json").read_text())
    assert plan["config"]["train"]["require_pretrained"] is False and plan["weights"] == []


def test_named_weights_are_checked_and_hashed(tmp_path, capsys):
    swin, clip = tmp_path / "swin_tiny.safetensors", tmp_path / "clip_text.bin"
    swin.write_bytes(os.urandom(4096))
    clip.write_bytes(os.urandom(8192))
    args = ["--config", "paper", "--dry-run", "--sizes", "paper", "--out", str(tmp_path / "run"),
            "--set", f"model.backbone.weights={swin}", "--set", f"model.text.weights={clip}"]
    assert train_main(args) == 0
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert [(w["setting"], w["sha256"]) for w in plan["weights"]] == [
        ("model.backbone.weights", hashlib.sha256(swin.read_bytes()).hexdigest()),
        ("model.text.weights", hashlib.sha256(clip.read_bytes()).hexdigest())]
    clip.unlink()
    assert train_main(args) == 2
    assert "model.text.weights" in capsys.readouterr().err


def test_global_batches_split_over_any_worker_count(capsys):
    """32 dense images on 3 workers: 11/11/10, cut into micro-batches of 4 (3 passes on every worker);
    512 caption pairs: 170 each (equal shares for the contrastive gather), 510 per step, said so.
    Fewer images than workers is refused."""
    argv = ["--config", "paper", "--dry-run", "--sizes", "paper", "--from-scratch"]
    assert train_main(argv + ["--workers", "3", "--set", "train.micro_batch=4"]) == 0
    out = capsys.readouterr().out
    assert "batch 32 (11/11/10 per worker, 3 micro-batches of 4 accumulated)" in out
    assert "batch 512 (170/worker) -> 510 per step" in out
    assert train_main(argv + ["--workers", "33"]) == 2
    assert "train.dense_batch_size=32 (the global panoptic batch) is smaller than the 33 workers" \
        in capsys.readouterr().err
    assert job_preset("paper").train.worker_batch_size("captions", 8) == 64
    assert job_preset("paper").train.rank_batch_sizes("panoptic", 5) == [7, 7, 6, 6, 6]


def test_an_elastic_plan_shows_every_worker_count_and_the_same_steps(capsys, tmp_path):
    """``--workers 2:4``: the same schedule as on 4 fixed workers (steps come from the global batch),
    and for 2, 3 and 4 workers how a step is split and accumulated; MIN above MAX is refused."""
    argv = ["--config", "paper", "--dry-run", "--sizes", "paper", "--from-scratch", "--set", "train.micro_batch=4"]
    assert train_main(argv + ["--workers", "4", "--out", str(tmp_path / "fixed")]) == 0
    fixed = json.loads((tmp_path / "fixed" / "plan.json").read_text())
    assert train_main(argv + ["--workers", "2:4", "--out", str(tmp_path / "elastic")]) == 0
    out = capsys.readouterr().out
    plan = json.loads((tmp_path / "elastic" / "plan.json").read_text())
    assert plan["schedule"] == fixed["schedule"] and (plan["min_workers"], plan["workers"]) == (2, 4)
    assert "on 2 to 4 (elastic) workers" in out
    by = plan["batches_by_workers"]
    assert sorted(by, key=int) == ["2", "3", "4"]
    assert by["3"]["panoptic"]["split"] == [11, 11, 10] and by["3"]["panoptic"]["accumulation_steps"] == [3, 3, 3]
    assert by["2"]["panoptic"]["accumulation_steps"] == [4, 4] and by["4"]["panoptic"]["accumulation_steps"] == [2] * 4
    assert by["3"]["captions"]["per_step"] == 510
    assert "on 3 workers: panoptic 11/11/10 x3 accumulated" in out
    assert fixed["batches_by_workers"] == {} and fixed["min_workers"] == 4
    with pytest.raises(SystemExit):
        train_main(argv + ["--workers", "4:2"])
    assert "1 <= MIN <= MAX" in capsys.readouterr().err


def test_data_root_without_pseudo_masks_is_an_error_naming_the_command(synthetic_world, tmp_path):
    from pipelines.train.data_prep import prepare_shards

    with pytest.raises(FileNotFoundError, match=r"python -m jobs\.pseudo_masks.*--box-masks"):
        prepare_shards(str(synthetic_world), str(tmp_path), None, box_masks=False)
    assert not (tmp_path / "shards").exists()


def test_coco_captions_alone_is_enough(synthetic_world, tmp_path):
    """The extra image-text source is an explicit choice (issue #21 item 7): a data root with
    image_text/ still trains on COCO Captions alone unless --extra-image-text asks for it."""
    from pipelines.train.sources import TrainingSources

    root = tmp_path / "data"
    root.mkdir()
    for name in ("coco_panoptic", "objects365"):
        (root / name).symlink_to(synthetic_world / name)
    sources = TrainingSources.from_layout(str(root))
    assert [c.name for c in sources.captions] == ["coco_captions"]
    assert [c.name for c in TrainingSources.from_layout(str(synthetic_world)).captions] == ["coco_captions"]
    assert [c.name for c in TrainingSources.from_layout(str(synthetic_world), extra_image_text=True).captions] \
        == ["coco_captions", "image_text"]
    with pytest.raises(FileNotFoundError, match="--extra-image-text"):
        TrainingSources.from_layout(str(root), extra_image_text=True)
    sizes = dataset_sizes(job_preset("tiny"), data_root=str(root))
    captions = json.loads((synthetic_world / "coco_panoptic/annotations/captions_train2017.json").read_text())
    assert sizes["captions"] == len({a["image_id"] for a in captions["annotations"]})


def test_baseline_trains_panoptic_only_and_captions_need_the_global_query():
    base = job_preset("baseline")
    assert base.train.caption_ratio == 0 and not base.model.decoder.global_query
    resolve("baseline")  # consistent as shipped
    with pytest.raises(ValueError, match="model.decoder.global_query"):
        resolve("baseline", ["train.caption_ratio=0.5"])


# ---- the dry-run plan ------------------------------------------------------------------------------

def test_plan_of_the_table1_recipe_on_8_workers_at_paper_sizes():
    job = build_recipe("t1_vloss")
    plan = make_plan(job, ClusterConfig(workers=8), dict(PAPER_SIZES), [], img_per_s=40.0)
    b = plan["batches"]
    assert (b["panoptic"]["global"], b["panoptic"]["per_worker"]) == (32, 4)
    assert (b["captions"]["global"], b["captions"]["per_worker"]) == (512, 64)
    assert (b["panoptic"]["input_size"], b["captions"]["input_size"]) == (768, 224)
    # written out: steps per pass = rows // global batch; STT epoch = detection + panoptic steps plus
    # floor(0.5 x dense steps) caption steps per sub-epoch
    pan, det, cap = 118_287 // 32, 660_000 // 32, 118_287 // 512
    assert (b["panoptic"]["steps_per_pass"], b["detection"]["steps_per_pass"], b["captions"]["steps_per_pass"]) \
        == (pan, det, cap)
    per_epoch = det + pan + det // 2 + pan // 2
    e0 = plan["schedule"]["per_epoch"][0]
    assert e0["steps"] == per_epoch and e0["sub_epochs"] == [
        {"name": "warmup", "steps": det + det // 2}, {"name": "cooldown", "steps": pan + pan // 2}]
    total = 12 * per_epoch
    assert plan["schedule"]["total_steps"] == total
    assert plan["lr"]["milestones"] == [{"step": total * 8 // 12, "epoch": 8}, {"step": total * 11 // 12, "epoch": 11}]
    images = 12 * ((det + pan) * 32 + (det // 2 + pan // 2) * 512 * (224 / 768) ** 2)
    assert plan["estimate"]["hours"] == pytest.approx(images / 40.0 / 3600, abs=0.01)
    # the data mix (issue #21 item 5), written out: caption steps are half the dense ones
    mix = plan["mix"]
    cap_steps = 12 * (det // 2 + pan // 2)
    assert mix["captions"]["steps"] == cap_steps and mix["detection"]["steps"] == 12 * det
    assert mix["captions"]["passes"] == pytest.approx(cap_steps * 512 / 118_287, abs=1e-3)  # about 632
    assert mix["captions"]["passes_per_epoch"][0] == pytest.approx(cap_steps / 12 * 512 / 118_287, abs=1e-3)
    assert mix["panoptic"]["passes"] == pytest.approx(12 * pan * 32 / 118_287, abs=1e-3)
    pixels = {t: mix[t]["images"] * (224 if t == "captions" else 768) ** 2 for t in mix}
    for t in mix:
        assert mix[t]["share_of_compute"] == pytest.approx(pixels[t] / sum(pixels.values()), abs=1e-4)
    assert sum(m["share_of_steps"] for m in mix.values()) == pytest.approx(1, abs=1e-3)


def test_dry_run_counts_rows_from_the_data_root_and_trains_nothing(synthetic_world, tmp_path):
    out = tmp_path / "run"
    assert train_main(["--data", str(synthetic_world), "--config", "tiny", "--box-masks", "--dry-run",
                       "--out", str(out), "--workers", "2", "--extra-image-text"]) == 0
    plan = json.loads((out / "plan.json").read_text())
    load = lambda p: json.loads((synthetic_world / p).read_text())  # noqa: E731
    pan = load("coco_panoptic/annotations/panoptic_train2017.json")
    det = load("objects365/annotations/train.json")
    caps = [load("coco_panoptic/annotations/captions_train2017.json"), load("image_text/annotations/captions.json")]
    assert plan["dataset_rows"] == {"panoptic": len(pan["images"]),
                                    "detection": len({a["image_id"] for a in det["annotations"]}),
                                    "captions": sum(len({a["image_id"] for a in c["annotations"]}) for c in caps)}
    assert plan["config"]["model"]["encoder"]["transformer_dim"] == 64  # the tiny network
    assert sorted(p.name for p in out.iterdir()) == ["plan.json"]


@pytest.mark.parametrize("dry_run", [True, False])
def test_every_failing_check_in_one_message_before_ray_and_nothing_written(tmp_path, capsys, dry_run):
    """Issue #21 item 8: the dry run runs every check of the launch (weights, data, pseudo masks,
    batches larger than the workers) and names all failures at once; the launch refuses the same, before Ray
    starts and without leaving an output folder."""
    import ray

    was_up = ray.is_initialized()
    out = tmp_path / "run"
    argv = ["--config", "paper", "--data", str(tmp_path / "typo"), "--workers", "40", "--out", str(out)]
    assert train_main(argv + (["--dry-run"] if dry_run else [])) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "problems:" in err
    assert "train.dense_batch_size=32" in err and "model.backbone.weights" in err and "typo: no such folder" in err
    assert not out.exists() and ray.is_initialized() == was_up


def test_missing_pseudo_masks_are_a_dry_run_refusal_too(synthetic_world, tmp_path, capsys):
    """The dry run used to pass (exit 0) what the launch refused after starting Ray."""
    out = tmp_path / "run"
    assert train_main(["--config", "tiny", "--data", str(synthetic_world), "--dry-run", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no pseudo-mask output" in err and "--box-masks" in err and not out.exists()
