"""The Ray Train entry point of every worker: build the runtime from Ray Train and fit a Trainer."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch

from pipelines.train.schedule import ScheduleConfig, StepSchedule
from pipelines.train.trainer import Trainer, WorkerRuntime
from pipelines.train.validation import ValSplit
from vloss.config import TrainJobConfig
from vloss.config_io import from_dict


def _ray_runtime(tasks: tuple[str, ...], sink: Any = None) -> WorkerRuntime:
    """The trainer's runtime on a Ray Train worker (``sink``: the driver's progress actor)."""
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    world = ctx.get_world_size()
    device = ray.train.torch.get_device()

    def wrap(module):
        if world > 1:
            return ray.train.torch.prepare_model(module, parallel_strategy_kwargs={"find_unused_parameters": True})
        return module.to(device)

    def report(metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        ray.train.report(metrics, checkpoint=checkpoint)

    @contextlib.contextmanager
    def restored() -> Iterator[str | None]:
        ckpt = ray.train.get_checkpoint()
        if ckpt is None:
            yield None
            return
        with ckpt.as_directory() as directory:  # a local path, or a temporary download removed after use
            yield directory

    datasets = {t: ray.train.get_dataset_shard(t) for t in tasks}  # same order on every rank
    progress = (lambda row: sink.put.remote(row)) if sink is not None else None
    return WorkerRuntime(rank=ctx.get_world_rank(), world_size=world, device=device, datasets=datasets,
                         wrap_model=wrap, report=report, restored_checkpoint=restored, progress=progress)


def local_runtime(datasets: dict[str, Any], device: str = "cpu") -> WorkerRuntime:
    """A one-process runtime: no DDP, no Ray Train; ``datasets`` are Ray datasets (or anything with
    ``iter_torch_batches``). For debugging a recipe and for tests that run a few steps of many recipes."""

    @contextlib.contextmanager
    def nothing() -> Iterator[None]:
        yield None

    dev = torch.device(device)
    return WorkerRuntime(rank=0, world_size=1, device=dev, datasets=datasets, wrap_model=lambda m: m.to(dev),
                         report=lambda metrics, checkpoint_dir: None, restored_checkpoint=nothing)


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train entry point.

    Args:
        loop_config: ``job`` (TrainJobConfig dict), ``schedule`` (ScheduleConfig dict),
            ``vocabularies`` ({task: names}), ``metrics_dir`` (where rank 0 writes metrics; None when the
            driver writes them), ``store`` (the run's storage for the best checkpoint), ``resume_from``,
            ``val`` (ValSplit fields or None), ``progress`` (the driver's progress actor, or None).
    """
    job = from_dict(loop_config["job"], TrainJobConfig)
    schedule = StepSchedule(ScheduleConfig.from_dict(loop_config["schedule"]))
    runtime = _ray_runtime(schedule.config.tasks_used(), loop_config.get("progress"))
    val = ValSplit(**loop_config["val"]) if loop_config.get("val") else None
    Trainer(job, schedule, loop_config["vocabularies"], runtime, run_dir=loop_config.get("metrics_dir"),
            resume_from=loop_config.get("resume_from"), val=val, store=loop_config.get("store")).fit()
