"""The Ray Train entry point of every worker: build the runtime from Ray Train and fit a Trainer."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch

from pipelines.train.datasets import TaskShards, pass_opener
from pipelines.train.schedule import ScheduleConfig, StepSchedule
from pipelines.train.stop import stop_check
from pipelines.train.streams import OpenPass
from pipelines.train.trainer import Trainer, WorkerRuntime
from pipelines.train.validation import ValSplit
from vloss.config import TrainJobConfig
from vloss.config_io import from_dict


def _ray_runtime(job: TrainJobConfig, shards: dict[str, TaskShards], input_cfg: dict[str, Any],
                 sink: Any = None, stop: Any = None) -> WorkerRuntime:
    """The trainer's runtime on a Ray Train worker (``sink``: the driver's progress actor; ``stop``:
    its stop-flag actor, :mod:`pipelines.train.stop`).

    Each worker reads its own rows of every pass (:mod:`pipelines.train.pass_plan`); Ray Train's
    dataset split is not used, since its streaming split gives rows to whichever rank asks first.
    """
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    world = ctx.get_world_size()
    device = ray.train.torch.get_device()

    def wrap(module):
        if world > 1:
            return ray.train.torch.prepare_model(module, parallel_strategy_kwargs={"find_unused_parameters": True})
        return module.to(device)

    from ray.train import CheckpointUploadMode

    asynchronous = input_cfg.get("checkpoint_upload", "async") == "async"
    # every report goes the same way: a synchronous report queued behind an asynchronous upload
    # would wait for it (Ray Train keeps reports in order)
    mode = CheckpointUploadMode.ASYNC if asynchronous else CheckpointUploadMode.SYNC

    def report(metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        # ASYNC: Ray uploads in its background thread and then removes checkpoint_dir itself
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_upload_mode=mode)

    @contextlib.contextmanager
    def restored() -> Iterator[str | None]:
        ckpt = ray.train.get_checkpoint()
        if ckpt is None:
            yield None
            return
        with ckpt.as_directory() as directory:  # a local path, or a temporary download removed after use
            yield directory

    rank = ctx.get_world_rank()
    open_pass = pass_opener(shards, job, rank, world, float(input_cfg.get("transform_cpus", 0.25)),
                            bool(input_cfg.get("verify", False)), pin_memory=device.type == "cuda")
    progress = (lambda row: sink.put.remote(row)) if sink is not None else None
    return WorkerRuntime(rank=rank, world_size=world, device=device, open_pass=open_pass,
                         wrap_model=wrap, report=report, restored_checkpoint=restored, progress=progress,
                         report_removes_checkpoint=asynchronous,
                         stop_requested=stop_check(stop, rank, world, device) if stop is not None else None)


def local_runtime(job: TrainJobConfig, shards: dict[str, TaskShards], device: str = "cpu",
                  open_pass: OpenPass | None = None) -> WorkerRuntime:
    """A one-process runtime: no DDP, no Ray Train, the same passes as rank 0 of 1 (Ray Data reads
    them). For debugging a recipe and for tests that run a few steps of many recipes."""

    @contextlib.contextmanager
    def nothing() -> Iterator[None]:
        yield None

    dev = torch.device(device)
    return WorkerRuntime(rank=0, world_size=1, device=dev, open_pass=open_pass or pass_opener(shards, job, 0, 1),
                         wrap_model=lambda m: m.to(dev),
                         report=lambda metrics, checkpoint_dir: None, restored_checkpoint=nothing)


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train entry point.

    Args:
        loop_config: ``job`` (TrainJobConfig dict), ``schedule`` (ScheduleConfig dict),
            ``vocabularies`` ({task: names}), ``metrics_dir`` (where rank 0 writes metrics; None when the
            driver writes them), ``store`` (the run's storage for the best checkpoint), ``resume_from``,
            ``val`` (ValSplit fields or None), ``progress`` (the driver's progress actor, or None),
            ``stop`` (the driver's stop-flag actor, or None),
            ``shards`` ({task: TaskShards fields}), ``input`` (``transform_cpus``, ``verify``).
    """
    job = from_dict(loop_config["job"], TrainJobConfig)
    schedule = StepSchedule(ScheduleConfig.from_dict(loop_config["schedule"]))
    shards = {t: TaskShards(**d) for t, d in loop_config["shards"].items()}
    runtime = _ray_runtime(job, shards, loop_config.get("input", {}), loop_config.get("progress"),
                           loop_config.get("stop"))
    val = ValSplit(**loop_config["val"]) if loop_config.get("val") else None
    Trainer(job, schedule, loop_config["vocabularies"], runtime, run_dir=loop_config.get("metrics_dir"),
            resume_from=loop_config.get("resume_from"), val=val, store=loop_config.get("store"),
            step_hooks=loop_config.get("step_hooks", ())).fit()
