"""Driver side of a training run: the ``TorchTrainer`` over the run's shards.

``run_training`` claims the run directory (:mod:`pipelines.train.run_dir`), builds the schedule
from the shard sizes, the named Ray datasets {panoptic, detection, captions} and the trainer, fits
it with the progress line (:mod:`pipelines.train.progress`), and says why a run stopped
(:mod:`pipelines.train.failures`). The shards come from :mod:`pipelines.train.data_prep`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from typing import Any, Callable

from pipelines.common import output_lock
from pipelines.common.errors import StoppedBySignal
from pipelines.common.progress import progress_sink
from pipelines.common.ray_env import ensure_ray
from pipelines.common.resources import check_fits
from pipelines.common.shared_paths import check_shared
from pipelines.common.storage import locate, read_json
from pipelines.train.config import ClusterConfig
from pipelines.train.datasets import task_shards
from pipelines.train.failures import TrainingStoppedError, restart_attempts, stopped_message
from pipelines.train.plan import dataset_sizes, schedule_config
from pipelines.train.progress import TrainingProgress
from pipelines.train.run_dir import (
    checkpoint_uri,
    claim_run,
    finished_steps,
    repair_snapshot,
    run_store,
    tidy_checkpoints,
)
from pipelines.train.schedule import ScheduleConfig, StepSchedule
from pipelines.train.shards import MANIFEST_NAME, read_vocabulary
from pipelines.train.stop import GracefulStop, stop_actor
from pipelines.train.trainer import BEST_FILE
from pipelines.train.validation import ValSplit
from pipelines.train.worker import train_loop_per_worker
from vloss.config import TrainJobConfig
from vloss.config_io import to_dict
from vloss.training.tasks import training_task


def build_schedule_config(job: TrainJobConfig, shard_root: str) -> ScheduleConfig:
    """Schedule sizes from the shard row counts (capped by the ``train.*_images`` trial limits)."""
    return schedule_config(job, dataset_sizes(job, shard_root=shard_root))


def val_split(job: TrainJobConfig, shard_root: str) -> ValSplit | None:
    """The panoptic val split recorded in the shard manifest (None when validation is off).

    Raises:
        FileNotFoundError: validation is on (``train.eval_every > 0``) but the split is missing.
    """
    if job.train.eval_every <= 0:
        return None
    sources = json.loads(locate(shard_root).child(MANIFEST_NAME).read_bytes()).get("sources", {})
    if not sources.get("val_json"):
        raise FileNotFoundError(f"{shard_root}: the shards record no panoptic val split "
                                f"(coco_panoptic/annotations/panoptic_val2017.json under the data root); "
                                f"set train.eval_every=0 to train without validation")
    split = ValSplit(sources["val_json"], sources["val_images"], sources["val_png_dir"])
    split.check()
    return split


def check_cluster(cluster: ClusterConfig) -> None:
    """Raise ResourceError unless the cluster can place every worker and an input task at once."""
    n = cluster.resolved_min_workers()  # an elastic run starts on as few as its minimum
    check_fits({"CPU": n * cluster.cpus_per_worker + cluster.transform_cpus,
                "GPU": n * cluster.gpus_per_worker},
               f"training ({n} workers x {cluster.cpus_per_worker:g} CPU"
               f"{f' x {cluster.gpus_per_worker:g} GPU' if cluster.gpus_per_worker else ''} + a "
               f"{cluster.transform_cpus:g}-CPU input task)", cluster.resource_wait_s)


STORE_NAME = "the run's storage (--storage-path; the run directory without it)"


def start_cluster(cluster: ClusterConfig, run_dir: str, paths: dict[str, str | None]) -> str:
    """Start (or join) Ray and check the cluster once for a run: the workers fit, and every local path
    in ``paths`` (plus the run's storage) is one each node can reach. Returns the run's storage.

    Raises:
        ResourceError: the workers and an input task do not fit.
        NotSharedError: a local path on a cluster of several nodes without ``cluster.shared_fs``.
    """
    ensure_ray()
    check_cluster(cluster)
    store = run_store(os.path.abspath(run_dir), cluster)
    check_shared({**paths, STORE_NAME: store}, "the training job", cluster.shared_fs, "--set cluster.shared_fs=true")
    return store


def run_training(job: TrainJobConfig, shard_root: str, run_dir: str, cluster: ClusterConfig,
                 resume_from: str | None = None, overwrite: bool = False, resume: str = "auto",
                 storage_filesystem: Any = None, step_hooks: tuple[Callable[..., None], ...] = ()) -> Any:
    """Check the cluster (:func:`start_cluster`), then :func:`fit`; returns the ``ray.train.Result``
    (None: the run was already complete).

    Args:
        job: the resolved recipe.
        shard_root: training shards (:mod:`pipelines.train.shards`).
        run_dir: where config, metrics and the result summary go (and checkpoints without
            ``cluster.storage_path``).
        cluster: workers and their resources.
        resume_from: a checkpoint directory to start from.
        overwrite: replace a run directory that holds another run (see :func:`claim_run`).
        resume: ``auto``: a re-run of the same run continues from its latest checkpoint;
            ``none``: refuse to continue it.
        storage_filesystem: a ``pyarrow.fs.FileSystem`` Ray Train uploads checkpoints through (its
            ``RunConfig.storage_filesystem``: e.g. an S3 filesystem with explicit credentials); it must
            show the same files as the store's path does to this process. None: from the path.
        step_hooks: callables run by every worker before each step, as
            ``hook(global_step, rank, world_size, store)`` (the fault drills install one that kills a
            worker); pickled to the workers with the loop's config, never part of the run's config.
    """
    start_cluster(cluster, run_dir, {"training shards": shard_root, "--resume": resume_from})
    return fit(job, shard_root, run_dir, cluster, resume_from, overwrite, resume, storage_filesystem, step_hooks)


def fit(job: TrainJobConfig, shard_root: str, run_dir: str, cluster: ClusterConfig, resume_from: str | None = None,
        overwrite: bool = False, resume: str = "auto", storage_filesystem: Any = None,
        step_hooks: tuple[Callable[..., None], ...] = ()) -> Any:
    """:func:`run_training` on a cluster :func:`start_cluster` checked (with ``shard_root`` among its
    paths, or under the run's storage); the arguments are :func:`run_training`'s."""
    try:
        return _fit_locked(job, shard_root, run_dir, cluster, resume_from, overwrite, resume, storage_filesystem,
                           step_hooks)
    finally:
        output_lock.release(locate(run_dir))  # the next job may write it


def _fit_locked(job: TrainJobConfig, shard_root: str, run_dir: str, cluster: ClusterConfig,
                resume_from: str | None, overwrite: bool, resume: str, storage_filesystem: Any,
                step_hooks: tuple[Callable[..., None], ...]) -> Any:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    run_dir = os.path.abspath(run_dir)
    store = run_store(run_dir, cluster)
    continuing = claim_run(job, shard_root, run_dir, cluster, resume_from, overwrite, resume)
    sched_cfg = build_schedule_config(job, shard_root)
    sched_cfg.validate()
    schedule = StepSchedule(sched_cfg)
    target = min(schedule.total_steps, job.train.max_steps or schedule.total_steps)
    done = finished_steps(run_dir) if continuing else 0
    if done >= target:
        print(f"[train] this run is complete: {done} of {target} steps trained (its result: "
              f"{os.path.join(run_dir, 'result.json')}); nothing to train. --overwrite starts it again; a larger "
              f"train.max_steps continues it", flush=True)
        return None
    val = val_split(job, shard_root)
    tasks = sched_cfg.tasks_used()
    shards = task_shards(shard_root, tasks, cluster.cache_shards_mb)
    cached = [t for t in tasks if shards[t].cached]
    if cached:
        print(f"[train] shards of {', '.join(cached)} cached in Ray's object store (each at most "
              f"cluster.cache_shards_mb={cluster.cache_shards_mb:g} MB); passes re-run only the transforms", flush=True)
    vocabularies = {t: read_vocabulary(shard_root, t).names for t in tasks if training_task(t).dense}
    os.makedirs(run_dir, exist_ok=True)
    job_dict = to_dict(job)
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump({"job": job_dict, "schedule": sched_cfg.to_dict(), "cluster": to_dict(cluster)}, f, indent=1)
    print(f"[train] schedule {sched_cfg.mode}: {schedule.total_steps} steps over {sched_cfg.epochs} epochs; "
          f"epoch 0 = {schedule.counts(0)}"
          + (f"; train.max_steps={job.train.max_steps}: this launch stops at step {target}"
             if target < schedule.total_steps else ""), flush=True)
    if continuing:
        step = tidy_checkpoints(store)
        fallback = repair_snapshot(store)
        if fallback is not None:  # Ray Train would not restore: the workers load the folder themselves
            resume_from, step = fallback
        print(f"[train] continuing this run from its latest checkpoint under {store}"
              + (f", at step {step}" if step is not None else "")
              + " (--resume none refuses, --overwrite starts again)", flush=True)
    sink, stop = progress_sink(), stop_actor()
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"job": job_dict, "schedule": sched_cfg.to_dict(), "vocabularies": vocabularies,
                           "metrics_dir": None, "store": store, "resume_from": resume_from,
                           "val": asdict(val) if val else None, "progress": sink, "stop": stop,
                           "step_hooks": tuple(step_hooks),
                           "shards": {t: asdict(v) for t, v in shards.items()},
                           "input": {"transform_cpus": cluster.transform_cpus,
                                     "verify": cluster.verify_shards == "full",
                                     "checkpoint_upload": cluster.checkpoint_upload}},
        scaling_config=ScalingConfig(num_workers=cluster.scaling_workers(), use_gpu=cluster.gpus_per_worker > 0,
                                     resources_per_worker={"CPU": cluster.cpus_per_worker,
                                                           **({"GPU": cluster.gpus_per_worker}
                                                              if cluster.gpus_per_worker else {})},
                                     elastic_resize_monitor_interval_s=cluster.elastic_resize_s),
        run_config=RunConfig(name="ray_train", storage_path=store, storage_filesystem=storage_filesystem,
                             checkpoint_config=CheckpointConfig(num_to_keep=job.train.keep_checkpoints),
                             failure_config=FailureConfig(max_failures=cluster.max_failures,
                                                          controller_failure_limit=restart_attempts(cluster))),
    )
    from ray.train import TrainingFailedError

    try:
        with GracefulStop(stop, "train", cluster.stop_grace_s), \
                TrainingProgress(sink, target, run_dir=run_dir):  # the bar ends where this launch ends
            result = trainer.fit()
    except TrainingFailedError as exc:
        raise TrainingStoppedError(stopped_message(exc, cluster, store)) from exc
    best_file = locate(store).child(BEST_FILE)
    best = read_json(best_file) if best_file.is_file() else None
    summary = {"checkpoint": checkpoint_uri(result.checkpoint),
               "best_checkpoint": best["path"] if best else None,
               "best": best,
               "metrics": {k: v for k, v in (result.metrics or {}).items()
                           if isinstance(v, (int, float, str))},
               "total_steps": schedule.total_steps,
               "steps_done": int((result.metrics or {}).get("step", 0))}
    with open(os.path.join(run_dir, "result.json"), "w") as f:
        json.dump(summary, f, indent=1)
    if (result.metrics or {}).get("stopped"):
        raise StoppedBySignal(f"stopped by SIGTERM after step {summary['steps_done']} of {target}; its checkpoint "
                              f"{summary['checkpoint']} is kept: re-run the same command to continue from it")
    return result
