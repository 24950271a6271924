"""What a training run will do, resolved before any Ray work: the checks that guard a cluster and the dry-run plan.

* :func:`check_weights` refuses a ``paper`` / ``baseline`` run without the ImageNet Swin-T and CLIP
  text weights (Sec. 4.2) unless the user chose ``--from-scratch``; every weights file named must
  exist, and its sha256 goes into the plan.
* :func:`dataset_sizes` counts the rows each task will train on: from built training shards, from
  the annotation files under a data root (no shards are built), or the paper's sizes
  (``--sizes paper``: COCO panoptic 118,287, an Objects365 sample of 660,000, COCO Captions 118,287).
* :func:`make_plan` turns sizes + config + workers into the numbers a lab checks before spending
  a cluster: global and per-worker batches, steps per sub-epoch / epoch / run, the LR milestones
  (step and epoch), the weights, and a wall-time estimate for a measured throughput.
"""

from __future__ import annotations

import json
import os
from typing import Any

from pipelines.common.storage import locate
from pipelines.train.config import ClusterConfig
from pipelines.train.schedule import ScheduleConfig, StepSchedule, TaskData
from vloss.config import TrainJobConfig
from vloss.config_io import to_dict
from vloss.training.optim import lr_milestones
from vloss.training.tasks import TASKS, training_task

PAPER_SIZES = {"panoptic": 118_287, "detection": 660_000, "captions": 118_287}

WEIGHTS_HELP = """\
{settings} must name the pretrained weights (paper Sec. 4.2):
  model.backbone.weights  a timm Swin-T ImageNet checkpoint (swin_tiny_patch4_window7_224), e.g. the
                          timm hub file model.safetensors / pytorch_model.bin, or the original
                          swin_tiny_patch4_window7_224.pth release
  model.text.weights      an open_clip CLIP ViT-B text (or full CLIP) checkpoint, e.g. open_clip's
                          ViT-B-32 / ViT-B-16 'openai' open_clip_pytorch_model.bin (.bin/.pth/.safetensors)
Download them once on a machine with internet (huggingface-cli download timm/swin_tiny_patch4_window7_224.ms_in1k;
huggingface-cli download timm/vit_base_patch32_clip_224.openai, or open_clip's model card), copy them to storage
every node reads, and pass --set model.backbone.weights=PATH --set model.text.weights=PATH, or name
them from the Hugging Face cache: model.backbone.weights=swin_tiny_patch4_window7_224.ms_in1k,
model.text.weights=ViT-B-32/openai.
To train from random initialisation on purpose, add --from-scratch."""


class WeightsRequiredError(ValueError):
    """A paper-scale run would start from random weights."""


def check_weights(job: TrainJobConfig, from_scratch: bool = False) -> list[dict[str, Any]]:
    """Refuse a run that needs pretrained weights and has none; describe the weights it has.

    Args:
        job: the resolved config.
        from_scratch: the user's explicit choice to train without pretrained weights.

    Returns:
        ``[{"setting", "path", "sha256", "bytes"}]`` for every weights file named (and ``name`` where
        the setting named weights in the Hugging Face cache, ``path`` being the file it resolved to).

    Raises:
        WeightsRequiredError: ``train.require_pretrained`` and a setting is empty (names both
            settings, the expected files and how to get them).
        FileNotFoundError: named weights do not exist (a file, or a name not in the Hugging Face
            cache): every such setting in one message.
    """
    settings = {"model.backbone.weights": job.model.backbone.weights, "model.text.weights": job.model.text.weights}
    missing = [k for k, v in settings.items() if not v]
    if job.train.require_pretrained and missing and not from_scratch:
        raise WeightsRequiredError(WEIGHTS_HELP.format(settings=" and ".join(missing)))
    from vloss.model.hub import resolve_weights

    out, problems = [], []
    for key, spec in settings.items():
        if not spec:
            continue
        tower = job.model.backbone if key == "model.backbone.weights" else job.model.text
        try:
            path = resolve_weights(spec, key.split(".")[1], tower.allow_download)  # a name: its file in the cache
        except FileNotFoundError as exc:
            problems.append(f"{key}={exc}")
            continue
        loc = locate(path)
        if not loc.is_file():
            problems.append(f"{key}={path}: no such weights file")
            continue
        entry = {"setting": key, "path": path, "sha256": loc.sha256(), "bytes": loc.fs.get_file_info(loc.path).size}
        if path != spec:
            entry["name"] = spec
        out.append(entry)
    if problems:  # every weights setting that fails, in one line
        raise FileNotFoundError("; ".join(problems))
    return out


def _count_json(path: str, key: str = "images", predicate=None) -> int:
    data = json.loads(locate(path).read_bytes())
    if predicate is None:
        return len(data.get(key, []))
    return predicate(data)


def _images_with(data: dict, field: str = "image_id") -> int:
    return len({a[field] for a in data.get("annotations", [])})


def dataset_sizes(job: TrainJobConfig, *, shard_root: str | None = None, data_root: str | None = None,
                  pseudo_masks: str | None = None, sizes: str | None = None,
                  extra_image_text: bool = False) -> dict[str, int]:
    """Rows each task trains on, before the ``train.*_images`` trial caps.

    Args:
        job: the resolved config (which tasks are used).
        shard_root: built training shards (exact counts from their footers).
        data_root: a data root or a sources file (counts from the annotation files; nothing is built).
        pseudo_masks: the pseudo-mask output (its manifest gives the detection images, e.g. a sample).
        sizes: ``"paper"`` for the paper's dataset sizes (no data needed).
    """
    if sizes == "paper":
        return dict(PAPER_SIZES)
    if sizes is not None:
        raise ValueError(f"--sizes must be 'paper', got {sizes!r}")
    if shard_root is not None:
        from pipelines.train.shards import count_rows

        return {t: count_rows(shard_root, t) for t in TASKS}
    if data_root is None:
        raise ValueError("dataset_sizes needs shards, a data root or sizes='paper'")
    from pipelines.train.sources import TrainingSources

    src = TrainingSources.from_data(data_root, extra_image_text=extra_image_text)
    out = {"panoptic": _count_json(src.panoptic_json)}
    manifest = locate(pseudo_masks).child("_manifest.json") if pseudo_masks else None
    if manifest is not None and manifest.exists():
        out["detection"] = int(json.loads(manifest.read_bytes())["counts"]["images_written"])
    else:
        out["detection"] = _count_json(src.detection_json, predicate=_images_with)
    out["captions"] = sum(_count_json(c.json, predicate=_images_with) for c in src.captions)
    return out


def schedule_config(job: TrainJobConfig, sizes: dict[str, int]) -> ScheduleConfig:
    """The step schedule's config for these dataset sizes and the global batches (the same on any
    number of workers)."""
    t = job.train

    def data(task: str) -> TaskData:
        n, cap = sizes[task], t.images_cap(task)
        return TaskData(min(n, cap) if cap else n, t.batch_size(task))

    return ScheduleConfig(
        mode=t.schedule, epochs=t.epochs, seed=job.seed, caption_ratio=t.caption_ratio,
        pretrain_epochs=t.pretrain_epochs, **{task: data(task) for task in t.tasks_used()})


def batch_plan(job: TrainJobConfig, task: str, workers: int, steps_per_pass: int) -> dict[str, Any]:
    """How one step's batch of ``task`` is split: per worker, in micro-batches, accumulated.

    ``global`` is the setting, ``per_step`` what a step trains on (less for captions on workers
    that do not divide their batch), ``split`` every worker's share, ``micro_batch`` and
    ``accumulation_steps`` the forward-backward passes each worker makes per step.
    """
    t = job.train
    split = t.rank_batch_sizes(task, workers)
    micro = split[0] if not training_task(task).dense or t.micro_batch <= 0 else min(t.micro_batch, split[0])
    return {"global": t.batch_size(task), "per_step": sum(split), "per_worker": split[0], "split": split,
            "micro_batch": micro,
            "accumulation_steps": [t.accumulation_steps(task, workers, r) for r in range(workers)],
            "input_size": getattr(job.input, training_task(task).size_key),
            "steps_per_pass": steps_per_pass}


def make_plan(job: TrainJobConfig, cluster: ClusterConfig, sizes: dict[str, int], weights: list[dict],
              img_per_s: float | None = None, source: str = "") -> dict[str, Any]:
    """The dry-run plan.

    Args:
        job: the resolved config.
        cluster: workers and resources.
        sizes: rows per task (:func:`dataset_sizes`).
        weights: from :func:`check_weights`.
        img_per_s: measured dense training throughput of the whole cluster (images/s at
            ``input.dense_size``), for the wall-time estimate; None leaves it out.
        source: where the sizes came from (for the record).

    Returns:
        a JSON-able dict (what ``RUN/plan.json`` holds).
    """
    sched_cfg = schedule_config(job, sizes)
    schedule = StepSchedule(sched_cfg)
    tasks = sched_cfg.tasks_used()
    epochs = []
    for e in range(sched_cfg.epochs):
        subs = [{"name": s.name, "steps": s.stop - s.start} for s in schedule.sub_epoch_boundaries(e)]
        epochs.append({"epoch": e, "steps": schedule.steps_in_epoch(e), "tasks": schedule.counts(e),
                       "sub_epochs": subs})
    milestones = lr_milestones(schedule.stage_lengths, job.optim)
    mix = data_mix(job, schedule, {t: sched_cfg_rows(sched_cfg, t) for t in tasks}, cluster.workers)
    plan: dict[str, Any] = {
        "workers": cluster.workers, "min_workers": cluster.resolved_min_workers(),
        "gpus_per_worker": cluster.gpus_per_worker,
        "dataset_rows": {t: sizes[t] for t in tasks}, "dataset_rows_source": source,
        "batches": {t: batch_plan(job, t, cluster.workers, schedule.pass_lengths[t]) for t in tasks},
        # an elastic run: how each worker count it may run on splits a step (the steps stay the same)
        "batches_by_workers": {str(w): {t: batch_plan(job, t, w, schedule.pass_lengths[t]) for t in tasks}
                               for w in cluster.worker_counts()} if cluster.is_elastic() else {},
        "schedule": {"mode": sched_cfg.mode, "epochs": sched_cfg.epochs, "total_steps": schedule.total_steps,
                     "stages": schedule.stage_lengths, "per_epoch": epochs},
        "mix": mix,
        "lr": {"base": job.optim.base_lr, "text": job.optim.text_lr,
               "backbone": job.optim.base_lr * job.optim.backbone_lr_mult, "gamma": job.optim.gamma,
               "milestones": [{"step": m, "epoch": schedule.position(m)[0]} for m in milestones]},
        "weights": weights,
        "config": to_dict(job),
        "cluster": to_dict(cluster),
    }
    if img_per_s:
        dense = sum(schedule.counts(e).get(t, 0) for e in range(sched_cfg.epochs) for t in ("panoptic", "detection"))
        captions = sum(schedule.counts(e).get("captions", 0) for e in range(sched_cfg.epochs))
        # caption images cost their pixel share of a dense image (224^2 / 768^2 at paper settings)
        pixel_ratio = (job.input.caption_size / job.input.dense_size) ** 2
        images = dense * job.train.dense_batch_size + captions * job.train.caption_batch_size * pixel_ratio
        seconds = images / img_per_s
        plan["estimate"] = {"img_per_s": img_per_s, "dense_steps": dense, "caption_steps": captions,
                            "caption_pixel_ratio": round(pixel_ratio, 4), "hours": round(seconds / 3600, 2),
                            "assumes": "dense images/s of the whole cluster; a caption image costs its pixel "
                                       "share of a dense one; validation and checkpointing not included"}
    return plan


def sched_cfg_rows(cfg: Any, task: str) -> int:
    """Rows of ``task`` a pass covers (after the ``train.*_images`` cap)."""
    return int(getattr(cfg, task).num_images)


def data_mix(job: TrainJobConfig, schedule: StepSchedule, rows: dict[str, int], workers: int) -> dict[str, Any]:
    """Per task: steps and images per epoch and over the run, passes over its data, share of compute.

    The compute share counts a training image by its pixels (``input.dense_size``^2 for dense
    tasks, ``input.caption_size``^2 for image-text pairs): the backbone and pixel decoder dominate
    a step and scale with pixels; the text tower and the losses are left out of the estimate.
    """
    epochs = schedule.config.epochs
    out: dict[str, Any] = {}
    cost = {}
    for t in rows:
        size = getattr(job.input, training_task(t).size_key)
        per_epoch = [schedule.counts(e).get(t, 0) for e in range(epochs)]
        images = [n * job.train.step_batch_size(t, workers) for n in per_epoch]
        total = sum(images)
        cost[t] = total * size * size
        out[t] = {"rows": rows[t], "steps_per_epoch": per_epoch, "images_per_epoch": images,
                  "passes_per_epoch": [round(i / rows[t], 3) if rows[t] else 0.0 for i in images],
                  "steps": sum(per_epoch), "images": total,
                  "passes": round(total / rows[t], 3) if rows[t] else 0.0}
    all_cost = sum(cost.values()) or 1
    all_steps = sum(v["steps"] for v in out.values()) or 1
    for t in out:
        out[t]["share_of_steps"] = round(out[t]["steps"] / all_steps, 4)
        out[t]["share_of_compute"] = round(cost[t] / all_cost, 4)
    return out


def format_plan(plan: dict[str, Any]) -> str:
    """The plan as a few console lines."""
    s = plan["schedule"]
    workers = plan["workers"] if plan.get("min_workers", plan["workers"]) == plan["workers"] else \
        f"{plan['min_workers']} to {plan['workers']} (elastic)"
    lines = [f"[plan] {s['mode']} schedule: {s['total_steps']} steps over {s['epochs']} epochs "
             f"(stages {s['stages']}) on {workers} workers"]
    for t, b in plan["batches"].items():
        split = b.get("split", [b["per_worker"]])
        share = f"{b['per_worker']}/worker" if len(set(split)) == 1 else "/".join(map(str, split)) + " per worker"
        acc = max(b.get("accumulation_steps", [1]))
        lines.append(f"[plan]   {t:9s} rows {plan['dataset_rows'][t]:>9,}  batch {b['global']} "
                     f"({share}"
                     + (f", {acc} micro-batches of {b['micro_batch']} accumulated" if acc > 1 else "") + ")"
                     + (f" -> {b['per_step']} per step (equal shares for the contrastive gather)"
                        if b.get("per_step", b["global"]) != b["global"] else "")
                     + f" at {b['input_size']}px  {b['steps_per_pass']} steps/pass")
    for w, batches in plan.get("batches_by_workers", {}).items():
        lines.append(f"[plan]   on {w} workers: " + "; ".join(
            f"{t} " + "/".join(map(str, b["split"])) + (f" x{max(b['accumulation_steps'])} accumulated"
                                                        if max(b["accumulation_steps"]) > 1 else "")
            + (f" ({b['per_step']} per step)" if b["per_step"] != b["global"] else "")
            for t, b in batches.items()))
    for t, m in plan.get("mix", {}).items():
        lines.append(f"[plan]   {t:9s} {m['steps']:,} steps ({100 * m['share_of_steps']:.0f}% of steps), "
                     f"{m['images']:,} images = {m['passes']:g} passes over its {m['rows']:,} rows "
                     f"({m['passes_per_epoch'][0]:g} in epoch 0), {100 * m['share_of_compute']:.0f}% of the compute "
                     f"(by pixels)")
    e0 = s["per_epoch"][0]
    lines.append(f"[plan]   epoch 0: {e0['steps']} steps {e0['tasks']}; sub-epochs "
                 + ", ".join(f"{x['name']} {x['steps']}" for x in e0["sub_epochs"]))
    lines.append("[plan]   lr x{} at steps ".format(plan["lr"]["gamma"])
                 + ", ".join(f"{m['step']} (epoch {m['epoch']})" for m in plan["lr"]["milestones"]))
    for w in plan["weights"]:
        lines.append(f"[plan]   {w['setting']} = " + (f"{w['name']} -> " if w.get("name") else "")
                     + f"{w['path']} (sha256 {w['sha256'][:16]}...)")
    if not plan["weights"]:
        lines.append("[plan]   no pretrained weights (random initialisation)")
    if "estimate" in plan:
        lines.append(f"[plan]   about {plan['estimate']['hours']} h at {plan['estimate']['img_per_s']} img/s")
    return "\n".join(lines)


def write_plan(plan: dict[str, Any], run_dir: str) -> str:
    """Write ``RUN/plan.json``; returns its path."""
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, "plan.json")
    with open(path, "w") as f:
        json.dump(plan, f, indent=1)
    return path
