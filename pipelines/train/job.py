"""Driver side of a training run: data preparation, Ray datasets and the ``TorchTrainer``.

``prepare_shards`` turns a data root (the layouts of ``docs/DATA_LAYOUT.md``) and the pseudo-mask
output into training shards; with no data root it generates the synthetic world. ``run_training``
builds the schedule from the shard sizes, the named Ray datasets {panoptic, detection, captions}
and the trainer, and fits it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from dataclasses import asdict
from typing import Any, Callable

import pyarrow.fs as pafs

from pipelines.common import output_lock
from pipelines.common.errors import JobError, StoppedBySignal
from pipelines.common.output_set import OutputConflictError, claim_output, manifest_identity
from pipelines.common.progress import progress_sink
from pipelines.common.pseudo_mask_format import MANIFEST_NAME as PSEUDO_MASK_MANIFEST
from pipelines.common.ray_env import ensure_ray
from pipelines.common.remote import is_remote, publish
from pipelines.common.resources import check_fits
from pipelines.common.shared_paths import check_shared
from pipelines.common.storage import locate, read_json
from pipelines.train.config import ClusterConfig
from pipelines.train.datasets import task_shards
from pipelines.train.metrics import MetricsWriter
from pipelines.train.plan import dataset_sizes, schedule_config
from pipelines.train.schedule import ScheduleConfig, StepSchedule
from pipelines.train.shards import MANIFEST_NAME, read_vocabulary
from pipelines.train.stop import GracefulStop, stop_actor
from pipelines.train.trainer import BEST_DIR, BEST_FILE, metrics_line
from pipelines.train.validation import ValSplit
from pipelines.train.worker import train_loop_per_worker
from vloss.config import TrainJobConfig
from vloss.config_io import to_dict
from vloss.progress import ProgressLine


def synthetic_world(work_dir: str, seed: int = 0) -> str:
    """The synthetic world under ``work_dir/world``, generated on first use; returns its root.

    ``work_dir`` may be an object-store URI (the run's storage on a cluster): the world is then
    generated in a local temporary folder and uploaded.
    """
    from vloss.data.synthetic import generate_world

    root = locate(work_dir).child("world")
    if root.child("world.json").exists():
        return root.uri
    print(f"[train] no --data given: generating the synthetic world in {root.uri}", flush=True)
    if not is_remote(root.uri):
        generate_world(root.path, seed)
        return root.uri
    local = tempfile.mkdtemp(prefix="vloss-world-")  # generated here, then uploaded (world.json last)
    try:
        generate_world(os.path.join(local, "world"), seed)
        marker = os.path.join(local, "world.json")
        os.replace(os.path.join(local, "world", "world.json"), marker)
        publish(os.path.join(local, "world"), root.uri)
        with open(marker, "rb") as f:
            root.child("world.json").write_bytes_atomic(f.read())
    finally:
        shutil.rmtree(local, ignore_errors=True)
    return root.uri


def prepare_shards(data_root: str | None, work_dir: str, pseudo_masks: str | None = None,
                   rows_per_shard: int = 256, seed: int = 0, box_masks: bool | None = None,
                   tasks: tuple[str, ...] = ("panoptic", "detection", "captions"), overwrite: bool = False,
                   extra_image_text: bool = False) -> str:
    """Training shards for ``data_root`` (generated synthetic world when None); returns their root.

    Args:
        data_root: data root in the layouts of ``docs/DATA_LAYOUT.md``, or a sources file naming
            one's own files (``docs/CUSTOM_DATA.md``); None: the synthetic world, generated under
            ``work_dir/world``.
        work_dir: where the world and the shards go.
        pseudo_masks: the pseudo-mask output for the detection boxes.
        rows_per_shard: images per shard.
        seed: seed of a generated world.
        box_masks: train detection on filled boxes; None means "when no pseudo-mask output
            exists" (the behaviour of the synthetic-world trial).
        tasks: the tasks the run trains (``TrainConfig.tasks_used()``); sources of other tasks are
            not read (a COCO-only recipe needs no pseudo masks).
        overwrite: replace a shard root built for another plan instead of refusing.
        extra_image_text: add the data root's extra image-text source (``image_text/``) to the captions.
    """
    from pipelines.train.sources import TrainingSources

    if data_root is None:
        data_root = synthetic_world(work_dir, seed)
    shard_root = os.path.join(work_dir, "shards")
    sources = TrainingSources.from_data(data_root, extra_image_text=extra_image_text)
    if "captions" not in tasks:
        sources.captions = []
    if "detection" not in tasks:
        sources.detection_json = sources.detection_images = None
        return _build(sources, shard_root, rows_per_shard, overwrite)
    explicit = pseudo_masks is not None
    if not explicit:
        pseudo_masks = os.path.join(work_dir, "pseudo_masks")
    has_pseudo = locate(pseudo_masks).child(PSEUDO_MASK_MANIFEST).exists()
    if box_masks is None:
        box_masks = not has_pseudo and not explicit
    if not box_masks and not has_pseudo:
        raise FileNotFoundError(missing_pseudo_masks(pseudo_masks, sources.detection_json, sources.detection_images))
    if box_masks:
        print("[train] detection masks: the filled boxes (weakly-supervised baseline, no pseudo masks)", flush=True)
    else:
        sources.pseudo_masks = pseudo_masks
    sources.box_masks = box_masks
    return _build(sources, shard_root, rows_per_shard, overwrite)


def missing_pseudo_masks(where: str, annotations: str, images: str) -> str:
    """What a run that needs pseudo masks says when ``where`` holds none: the command that makes them."""
    return (f"no pseudo-mask output at {where} (no {PSEUDO_MASK_MANIFEST}); make it with python -m jobs.pseudo_masks "
            f"--annotations {annotations} --images {images} --checkpoint TEACHER.pth --out {where} and pass "
            f"--pseudo-masks {where}, or train detection on filled boxes (the weak baseline of Sec. 3.2) with "
            f"--box-masks")


def _build(sources, shard_root: str, rows_per_shard: int, overwrite: bool) -> str:
    from pipelines.train.sources import build_training_shards

    manifest = build_training_shards(sources, shard_root, rows_per_shard=rows_per_shard, overwrite=overwrite)
    print("[train] training shards:", json.dumps({t: v["images"] for t, v in manifest["tasks"].items()}),
          flush=True)
    return shard_root


def build_schedule_config(job: TrainJobConfig, shard_root: str) -> ScheduleConfig:
    """Schedule sizes from the shard row counts (capped by the ``train.*_images`` trial limits)."""
    return schedule_config(job, dataset_sizes(job, shard_root=shard_root))


class TrainingProgress:
    """Driver thread: draws the training progress line from rank 0's rows and prints each metrics line.

    Args:
        sink: the progress actor the rank-0 worker puts its logged rows into.
        total_steps: the step this launch ends at (the bar's length: the schedule's, or ``train.max_steps``).
        poll_s: seconds between polls.
        run_dir: where the driver writes every row to ``metrics.jsonl`` and TensorBoard (the
            rank-0 worker may run on another machine than the run directory's).
        label: the stage's name on the line (``train``, ``pretrain``).
    """

    def __init__(self, sink: Any, total_steps: int, poll_s: float = 1.0, run_dir: str | None = None,
                 label: str = "train") -> None:
        self.sink, self.total, self.poll_s, self.label = sink, total_steps, poll_s, label
        self.writer = MetricsWriter(run_dir)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vloss-train-progress", daemon=True)
        self.line: ProgressLine | None = None

    def __enter__(self) -> TrainingProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        if self.line is not None:
            self.line.close()

    def _drain(self) -> None:
        import ray

        for row in ray.get(self.sink.drain.remote()):
            self.writer.write({k: v for k, v in row.items() if k != "total_steps"})
            if self.line is None:
                self.line = ProgressLine(self.label, self.total, unit="step")
            postfix = " ".join(f"{k.split('/')[0]} {v:.3g}" for k, v in row.items()
                               if isinstance(v, float) and k.endswith("/total"))
            self.line.set(row["step"], postfix)
            self.line.message(metrics_line(row, self.total, self.label))

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self._drain()
            except Exception:  # the run is ending or Ray is shutting down: the result says how it went
                break
        try:
            self._drain()
        except Exception:
            pass


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


# settings that say how long to run and how often to log or keep checkpoints, not what is trained:
# changing them continues the same run
RUN_LENGTH_KEYS = ("max_steps", "log_every", "checkpoint_every", "keep_checkpoints", "eval_every", "val_images",
                   "val_batch_size")
RUN_STATE = ("metrics.jsonl", "tensorboard", "result.json")      # in the run directory
STORE_STATE = ("ray_train", BEST_DIR, BEST_FILE)                  # in the run's storage (run_store)


def run_store(run_dir: str, cluster: ClusterConfig) -> str:
    """Where a run keeps what workers write (checkpoints, the best checkpoint): shared by every node.

    ``cluster.storage_path/<run name>`` (the run name is the run directory's base name), or the
    run directory itself without a storage path (one machine, or a mount every node shares).
    """
    if not cluster.storage_path:
        return run_dir
    return locate(cluster.storage_path).child(os.path.basename(os.path.normpath(run_dir))).uri


def run_fingerprint(job: TrainJobConfig, cluster: ClusterConfig, shard_root: str) -> dict[str, Any]:
    """What determines a training run: the recipe (less its run-length knobs), the data, GPU or not.

    Not the number of workers: a step trains on the same images on any number of them
    (:mod:`pipelines.train.pass_plan`), so a run continues on fewer or more workers (elastic runs)."""
    recipe = to_dict(job)
    for key in RUN_LENGTH_KEYS:
        recipe["train"].pop(key, None)
    for part in ("backbone", "decoder"):  # memory switches: the same gradients, the same run
        recipe["model"][part].pop("grad_checkpointing", None)
    for part in ("backbone", "text"):  # whether a missing cache entry may be fetched: not what is trained
        recipe["model"][part].pop("allow_download", None)
    return {"recipe": recipe, "gpu": cluster.gpus_per_worker > 0,
            "shards": manifest_identity(read_json(locate(shard_root).child(MANIFEST_NAME))),
            "vocabularies": {t: read_vocabulary(shard_root, t).to_json() for t in job.train.tasks_used()
                             if t != "captions"}}


def claim_run(job: TrainJobConfig, shard_root: str, run_dir: str, cluster: ClusterConfig,
              resume_from: str | None, overwrite: bool, resume: str = "auto") -> bool:
    """Claim the run directory for this run before any training (issues #13, #15).

    The same run re-run continues from its own latest checkpoint (Ray Train restores it), also
    after its driver was killed: ``resume="auto"``; ``resume="none"`` refuses to continue it
    instead. Another recipe, worker count or data is refused with what differs, unless
    ``overwrite`` (the old run's state is then removed). An explicit ``resume_from`` on a
    directory that already holds this run's checkpoints is refused rather than silently ignored
    (Ray Train would restore its own).

    Returns:
        Whether the run continues from its own checkpoints.

    Raises:
        OutputConflictError: as above.
    """
    store = run_store(run_dir, cluster)
    storage = locate(store).child("ray_train")
    has_state = bool(storage.list_dirs())
    claim = claim_output(run_dir, run_fingerprint(job, cluster, shard_root), overwrite=overwrite,
                         what="a training run", command_hint="--overwrite")
    if claim.resumed and has_state and resume_from:
        raise OutputConflictError(f"{run_dir} already holds this run's checkpoints ({storage.uri}); Ray Train "
                                  f"continues from its own latest one, so --resume {resume_from} would be ignored. "
                                  f"Drop --resume to continue this run, or use another --out (or --overwrite) to "
                                  f"start from {resume_from}.")
    if claim.resumed and has_state and resume == "none":
        raise OutputConflictError(f"{run_dir} already holds checkpoints of this run ({storage.uri}) and --resume "
                                  f"none refuses to continue it. Use --resume auto (the default) to continue from "
                                  f"its latest checkpoint, or --overwrite to start it again.")
    if not claim.resumed and (has_state or overwrite):
        places = [locate(run_dir).child(n) for n in RUN_STATE] + [locate(store).child(n) for n in STORE_STATE]
        for loc in places:  # the old run's state would otherwise be restored or mixed in
            if loc.fs.get_file_info(loc.path).type == pafs.FileType.Directory:
                loc.fs.delete_dir(loc.path)
            else:
                loc.delete()
    return bool(claim.resumed and has_state)



class TrainingStoppedError(JobError):
    """Ray Train gave up (a worker or node lost beyond ``max_failures``, or no room to restart)."""


def restart_attempts(cluster: ClusterConfig) -> int:
    """How often Ray Train may try again to place the worker group after losing a worker or node.

    Each try waits ``RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S`` (Ray's default 60 s) for the
    resources; Ray's own default is to try forever, which on a fixed cluster that lost a node is
    a hang. We try for about ``cluster.resource_wait_s`` (300 s on a joined cluster, whose
    autoscaler may replace the node; 0 on the embedded Ray), then stop with
    :class:`TrainingStoppedError`.
    """
    from pipelines.common.ray_env import started_locally
    from pipelines.common.resources import default_wait_s

    wait = cluster.resource_wait_s if cluster.resource_wait_s is not None else default_wait_s(started_locally())
    per_try = float(os.environ.get("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", 60.0))
    return int(wait // per_try) if per_try > 0 else 0


def failure_cause(exc: BaseException) -> tuple[str, bool]:
    """The cause of a stopped Ray Train run in one line, and whether it was a lost worker or node.

    Ray Train's own message is a per-rank traceback snippet whose first line is empty when the
    traceback is long (the bare ``[Rank 0 Error Snippet]:.`` users saw); the worker's exception
    itself is in ``worker_failures`` (or ``controller_failure``), wrapped with its traceback text.
    """
    failures = getattr(exc, "worker_failures", None) or {}
    if failures:
        rank, err = sorted(failures.items(), key=lambda kv: kv[0])[0]
        where = f"rank {rank}"
    else:
        err, where = getattr(exc, "controller_failure", None) or exc, "the Ray Train controller"
    seen: set[int] = set()
    while id(err) not in seen:  # unwrap Ray's wrappers to the exception the user's code raised
        seen.add(id(err))
        inner = getattr(err, "_base_exc", None) or getattr(err, "cause", None) or err.__cause__
        if not isinstance(inner, BaseException):
            break
        err = inner
    name = type(err).__name__
    lost = any(k in name or k in str(err) for k in ("HealthCheck", "ActorDied", "NodeDied", "WorkerCrashed",
                                                    "ActorUnavailable", "OutOfMemory", "Preemption",
                                                    "WorkerGroupStartupTimeout"))
    text = " ".join(str(err).split()) or "(no message)"
    if text.startswith("Traceback"):  # a bare traceback string: its last line names the exception
        text = str(err).strip().splitlines()[-1]
        name = ""
    return f"{where}: {name + ': ' if name else ''}{text[:600]}", lost


def stopped_message(exc: BaseException, cluster: ClusterConfig, store: str) -> str:
    """What a stopped run tells the user: the worker's exception in one line and how to continue."""
    cause, lost = failure_cause(exc)
    ckpts = locate(store).child("ray_train").uri
    if lost:
        needs = f"{cluster.workers} workers x {cluster.cpus_per_worker:g} CPU" + (
            f" x {cluster.gpus_per_worker:g} GPU" if cluster.gpus_per_worker else "")
        return (f"training stopped: {cause}. The checkpoints so far are under {ckpts}; once the cluster can place "
                f"{needs} again (a lost node back), re-run the same command to continue from the latest one; "
                f"the same run also continues on fewer workers (--workers N, or --workers MIN:MAX to shrink and "
                f"grow with the cluster).")
    return (f"training stopped: {cause}. The checkpoints so far are under {ckpts}; after fixing the cause, re-run "
            f"the same command to continue from the latest one.")


def run_training(job: TrainJobConfig, shard_root: str, run_dir: str, cluster: ClusterConfig,
                 resume_from: str | None = None, overwrite: bool = False, resume: str = "auto",
                 storage_filesystem: Any = None, step_hooks: tuple[Callable[..., None], ...] = ()) -> Any:
    """Fit VLOSS with Ray Train; returns the ``ray.train.Result`` (None: the run was already complete).

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
    try:
        return _run_training_locked(job, shard_root, run_dir, cluster, resume_from, overwrite, resume,
                                    storage_filesystem, step_hooks)
    finally:
        output_lock.release(locate(run_dir))  # the next job may write it


def _run_training_locked(job: TrainJobConfig, shard_root: str, run_dir: str, cluster: ClusterConfig,
                         resume_from: str | None = None, overwrite: bool = False, resume: str = "auto",
                         storage_filesystem: Any = None, step_hooks: tuple[Callable[..., None], ...] = ()) -> Any:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    ensure_ray()
    check_cluster(cluster)
    run_dir = os.path.abspath(run_dir)
    store = run_store(run_dir, cluster)
    check_shared({"training shards": shard_root, "the run's storage (--storage-path; the run directory without it)":
                  store, "--resume": resume_from}, "the training job", cluster.shared_fs,
                 "--set cluster.shared_fs=true")
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
    vocabularies = {t: read_vocabulary(shard_root, t).names for t in tasks if t != "captions"}
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


def tidy_checkpoints(store: str) -> int | None:
    """Remove partial checkpoint folders of a run (a write cut by a full disk or a kill: no
    ``state.pt`` or ``meta.json``), which Ray Train never lists but which would pile up, and return
    the step of the newest complete checkpoint (None: none readable)."""
    import zipfile

    from vloss.checkpoint import META_FILE, STATE_FILE

    storage = locate(store).child("ray_train")
    best = None
    for name in storage.list_dirs():
        if not name.startswith("checkpoint_"):
            continue
        ckpt = storage.child(name)
        if not (ckpt.child(STATE_FILE).is_file() and ckpt.child(META_FILE).is_file()):
            storage.fs.delete_dir(ckpt.path)
            print(f"[train] removed the partial checkpoint folder {ckpt.uri} (no {STATE_FILE} or {META_FILE})",
                  flush=True)
            continue
        try:
            step = int(read_json(ckpt.child(META_FILE)).get("global_step"))
            if isinstance(ckpt.fs, pafs.LocalFileSystem):
                with zipfile.ZipFile(ckpt.child(STATE_FILE).path) as zf:  # reads only the directory at its end
                    zf.namelist()
        except (ValueError, TypeError, OSError, zipfile.BadZipFile) as exc:
            print(f"[train] checkpoint {ckpt.uri} is damaged ({type(exc).__name__}: {exc}); the workers continue "
                  f"from the newest checkpoint before it", flush=True)
            continue
        best = step
    return best


SNAPSHOT_FILE = "checkpoint_manager_snapshot.json"  # Ray Train's list of a run's checkpoints (Ray 2.60)


def repair_snapshot(store: str) -> tuple[str, int] | None:
    """Check Ray Train's run snapshot before a run continues; set a damaged one aside.

    Ray writes the snapshot in place (not atomically), so a kill or a full disk can leave it
    truncated, and a snapshot can name a checkpoint folder that is gone; either way Ray Train
    refuses to start. A damaged snapshot is renamed ``SNAPSHOT.damaged-N`` (kept for a look) and
    the run continues from the newest complete checkpoint folder, which the workers load as an
    explicit resume point, with one line saying so.

    Returns:
        ``(checkpoint folder URI, its step)`` to continue from when the snapshot was set aside
        (``("", 0)`` when no complete folder is left), or None when the snapshot is sound or absent.
    """
    import zipfile

    from vloss.checkpoint import META_FILE, STATE_FILE

    storage = locate(store).child("ray_train")
    snap = storage.child(SNAPSHOT_FILE)
    if not snap.is_file():
        return None
    folders = set(storage.list_dirs())
    try:
        state = read_json(snap)
        names = [r["checkpoint_dir_name"] for r in state["checkpoint_results"]]
        missing = [n for n in names if n not in folders]
        problem = f"it names checkpoint folders that are gone ({', '.join(missing[:3])})" if missing else None
    except (ValueError, KeyError, TypeError) as exc:
        problem = f"it cannot be read ({type(exc).__name__}: {str(exc)[:200]})"
    if problem is None:
        return None
    newest: tuple[int, str] | None = None
    for name in sorted(folders):
        ckpt = storage.child(name)
        if not (name.startswith("checkpoint_") and ckpt.child(STATE_FILE).is_file()
                and ckpt.child(META_FILE).is_file()):
            continue
        try:
            step = int(read_json(ckpt.child(META_FILE))["global_step"])
            if isinstance(ckpt.fs, pafs.LocalFileSystem):
                with zipfile.ZipFile(ckpt.child(STATE_FILE).path) as zf:  # a truncated state.pt has no directory
                    zf.namelist()
        except (ValueError, KeyError, TypeError, OSError, zipfile.BadZipFile):
            continue
        if newest is None or step > newest[0]:
            newest = (step, ckpt.uri)
    n = 1
    while storage.child(f"{SNAPSHOT_FILE}.damaged-{n}").exists():
        n += 1
    aside = storage.child(f"{SNAPSHOT_FILE}.damaged-{n}")
    storage.fs.move(snap.path, aside.path)
    where = f"continuing from the newest complete checkpoint folder {newest[1]}" if newest else \
        "no complete checkpoint folder is left, so the run starts again from step 0"
    print(f"[train] Ray Train's run snapshot {snap.uri} is damaged: {problem}; set aside as {aside.uri}, {where}",
          flush=True)
    return (newest[1], newest[0]) if newest else ("", 0)


def finished_steps(run_dir: str) -> int:
    """Steps a run directory's last completed launch had trained up to (0: none recorded)."""
    path = os.path.join(run_dir, "result.json")
    try:
        with open(path) as f:
            return int(json.load(f).get("steps_done", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return 0


def checkpoint_uri(checkpoint: Any) -> str | None:
    """A Ray Train checkpoint's location as the user can pass it on: a local path, or ``s3://...``."""
    if checkpoint is None:
        return None
    fs = getattr(checkpoint, "filesystem", None)
    if fs is None or isinstance(fs, pafs.LocalFileSystem):
        return checkpoint.path
    return f"{fs.type_name}://{checkpoint.path.lstrip('/')}"
