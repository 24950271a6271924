"""Driver side of a training run: data preparation, Ray datasets and the ``TorchTrainer``.

``prepare_shards`` turns a data root (the layouts of ``docs/DATA_LAYOUT.md``) into training
shards, running the pseudo-mask stage first when its output is missing; with no data root it
generates the synthetic world. ``run_training`` builds the schedule from the shard sizes,
the named Ray datasets {panoptic, detection, captions} and the trainer, and fits it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from pipelines.schedule import ScheduleConfig, StepSchedule, TaskData
from pipelines.train_config import TrainJobConfig, job_to_dict
from pipelines.train_data import task_dataset
from pipelines.train_loop import train_loop_per_worker
from pipelines.train_shards import count_rows, read_vocabulary


@dataclass
class ClusterSettings:
    """How many workers and what each reserves.

    Args:
        workers: Ray Train workers (ranks).
        gpus_per_worker: GPUs per worker (0 = CPU training).
        cpus_per_worker: logical CPUs per worker (keep some for Ray Data on small machines).
        max_failures: worker-group restarts from the last checkpoint before giving up.
        storage_path: where Ray Train keeps checkpoints (local dir or s3://, shared by nodes).
        transform_cpus: CPUs each Ray Data transform task reserves.
    """

    workers: int = 2
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 0.5
    max_failures: int = 1
    storage_path: str | None = None
    transform_cpus: float = 0.25


def prepare_shards(data_root: str | None, work_dir: str, pseudo_masks: str | None = None,
                   rows_per_shard: int = 256, seed: int = 0) -> str:
    """Training shards for ``data_root`` (generated synthetic world when None); returns their root."""
    from pipelines.pseudo_masks import PseudoMaskJobConfig, run_pseudo_masks
    from pipelines.train_sources import TrainingSources, build_training_shards
    from vloss.teacher.config import TeacherConfig

    if data_root is None:
        data_root = os.path.join(work_dir, "world")
        if not os.path.exists(os.path.join(data_root, "world.json")):
            from vloss.data.synthetic import generate_world

            print(f"[train] no --data given: generating the synthetic world in {data_root}", flush=True)
            generate_world(data_root, seed)
    shard_root = os.path.join(work_dir, "shards")
    if os.path.exists(os.path.join(shard_root, "_manifest.json")):
        return shard_root
    sources = TrainingSources.from_layout(data_root)
    if pseudo_masks is None:
        pseudo_masks = os.path.join(work_dir, "pseudo_masks")
        if not os.path.exists(os.path.join(pseudo_masks, "_manifest.json")):
            # without a teacher checkpoint the weakly-supervised box baseline fills each box
            print("[train] pseudo masks missing: running the pseudo-mask stage with the box backend", flush=True)
            run_pseudo_masks(PseudoMaskJobConfig(annotations=sources.detection_json,
                                                 images=sources.detection_images, out=pseudo_masks,
                                                 teacher=TeacherConfig(backend="box")))
    sources.pseudo_masks = pseudo_masks
    manifest = build_training_shards(sources, shard_root, rows_per_shard=rows_per_shard)
    print("[train] training shards:", json.dumps({t: v["images"] for t, v in manifest["tasks"].items()}),
          flush=True)
    return shard_root


def build_schedule_config(job: TrainJobConfig, shard_root: str, workers: int) -> ScheduleConfig:
    """Schedule sizes from the shard row counts (capped by the ``train.*_images`` trial limits)."""
    t = job.train

    def data(task: str) -> TaskData:
        n, cap = count_rows(shard_root, task), t.images_cap(task)
        return TaskData(min(n, cap) if cap else n, t.batch_size(task))

    return ScheduleConfig(
        mode=t.schedule, epochs=t.epochs, num_workers=workers, seed=job.seed, caption_ratio=t.caption_ratio,
        pretrain_epochs=t.pretrain_epochs, panoptic=data("panoptic"),
        detection=data("detection") if t.schedule != "panoptic" else None,
        captions=data("captions") if t.caption_ratio > 0 else None)


def run_training(job: TrainJobConfig, shard_root: str, run_dir: str, cluster: ClusterSettings,
                 resume_from: str | None = None) -> Any:
    """Fit VLOSS with Ray Train; returns the ``ray.train.Result``."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    sched_cfg = build_schedule_config(job, shard_root, cluster.workers)
    sched_cfg.validate()
    schedule = StepSchedule(sched_cfg)
    tasks = sched_cfg.tasks_used()
    datasets = {t: task_dataset(shard_root, t, job.input, job.train.images_cap(t), cluster.transform_cpus)
                for t in tasks}
    vocabularies = {t: read_vocabulary(shard_root, t).names for t in tasks if t != "captions"}
    run_dir = os.path.abspath(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    job_dict = job_to_dict(job)
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump({"job": job_dict, "schedule": sched_cfg.to_dict(), "cluster": cluster.__dict__}, f, indent=1)
    print(f"[train] schedule {sched_cfg.mode}: {schedule.total_steps} steps over {sched_cfg.epochs} epochs; "
          f"epoch 0 = {schedule.counts(0)}", flush=True)
    # checkpoints live in the run directory unless shared storage (s3://, NFS) is given
    storage = cluster.storage_path or run_dir
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"job": job_dict, "schedule": sched_cfg.to_dict(), "vocabularies": vocabularies,
                           "run_dir": run_dir, "resume_from": resume_from},
        scaling_config=ScalingConfig(num_workers=cluster.workers, use_gpu=cluster.gpus_per_worker > 0,
                                     resources_per_worker={"CPU": cluster.cpus_per_worker,
                                                           **({"GPU": cluster.gpus_per_worker}
                                                              if cluster.gpus_per_worker else {})}),
        datasets=datasets,
        run_config=RunConfig(name="ray_train", storage_path=storage,
                             checkpoint_config=CheckpointConfig(num_to_keep=job.train.keep_checkpoints),
                             failure_config=FailureConfig(max_failures=cluster.max_failures)),
    )
    result = trainer.fit()
    summary = {"checkpoint": result.checkpoint.path if result.checkpoint else None,
               "metrics": {k: v for k, v in (result.metrics or {}).items()
                           if isinstance(v, (int, float, str))},
               "total_steps": schedule.total_steps}
    with open(os.path.join(run_dir, "result.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return result
