"""Fixtures for the evaluation job: random-init tiny checkpoints saved through the real saving
paths (a trainer checkpoint directory and a model-weights file) and one Ray per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vloss.config import to_dict
from vloss.model import VLOSS, save_model_weights


def _tiny_job():
    from pipelines.train_config import job_preset

    return job_preset("tiny")


@pytest.fixture(scope="session")
def tiny_model() -> VLOSS:
    torch.manual_seed(0)
    return VLOSS(_tiny_job().model).eval()


@pytest.fixture(scope="session")
def tiny_checkpoint_dir(tiny_model: VLOSS, tmp_path_factory) -> Path:
    """A checkpoint directory written by the trainer's own ``_save_checkpoint`` (real optimizer,
    LR scheduler and step schedule, as a training run saves them)."""
    from pipelines.schedule import ScheduleConfig, StepSchedule, TaskData
    from pipelines.train_config import job_to_dict
    from pipelines.train_loop import _save_checkpoint
    from vloss.lr_schedule import build_lr_scheduler, build_optimizer

    job = _tiny_job()
    schedule = StepSchedule(ScheduleConfig(mode="panoptic", epochs=1, num_workers=1, caption_ratio=0.0,
                                           panoptic=TaskData(8, 4), detection=None, captions=None))
    optimizer = build_optimizer(tiny_model, job.optim)
    scheduler = build_lr_scheduler(optimizer, schedule.total_steps, job.optim)
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint_000000"
    path.mkdir()
    _save_checkpoint(str(path), tiny_model, optimizer, scheduler, None, schedule, job_to_dict(job),
                     {"optimizer_steps": 0})
    return path


@pytest.fixture(scope="session")
def tiny_weights_file(tiny_model: VLOSS, tmp_path_factory) -> Path:
    """A model-weights file from ``save_model_weights`` with the ``tiny`` VLOSSConfig stored."""
    from vloss.config import tiny

    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    save_model_weights(tiny_model, path, to_dict(tiny()))
    return path


@pytest.fixture(scope="session")
def ray_session():
    """One embedded Ray for the evaluation job tests (shared with other packages' sessions)."""
    from pipelines.ray_env import ensure_ray

    ensure_ray(2)
    import ray

    yield ray
