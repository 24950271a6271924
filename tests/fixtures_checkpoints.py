"""Checkpoint fixtures for the whole suite: random-init tiny checkpoints saved through the real saving
paths (a trainer checkpoint directory and a model-weights file)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vloss.config_io import to_dict
from vloss.model import VLOSS, save_model_weights


def _tiny_job():
    from vloss.config import job_preset

    return job_preset("tiny")


@pytest.fixture(scope="session")
def tiny_model() -> VLOSS:
    torch.manual_seed(0)
    return VLOSS(_tiny_job().model).eval()


@pytest.fixture(scope="session")
def tiny_checkpoint_dir(tiny_model: VLOSS, tmp_path_factory) -> Path:
    """A checkpoint directory written by the checkpoint module the trainer uses (real optimizer,
    LR scheduler and step schedule, as a training run saves them)."""
    from pipelines.train.schedule import ScheduleConfig, StepSchedule, TaskData
    from vloss.checkpoint import save_training_checkpoint
    from vloss.training.optim import build_lr_scheduler, build_optimizer

    job = _tiny_job()
    schedule = StepSchedule(ScheduleConfig(mode="panoptic", epochs=1, caption_ratio=0.0,
                                           panoptic=TaskData(8, 4), detection=None, captions=None))
    optimizer = build_optimizer(tiny_model, job.optim)
    scheduler = build_lr_scheduler(optimizer, schedule.total_steps, job.optim)
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint_000000"
    path.mkdir()
    save_training_checkpoint(path, model=tiny_model, optimizer=optimizer, lr_scheduler=scheduler, scaler=None,
                             schedule=schedule, optimizer_steps=0, job=job)
    return path


@pytest.fixture(scope="session")
def tiny_weights_file(tiny_model: VLOSS, tmp_path_factory) -> Path:
    """A model-weights file from ``save_model_weights`` with the ``tiny`` VLOSSConfig stored."""
    from vloss.config import tiny

    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    save_model_weights(tiny_model, path, to_dict(tiny()))
    return path


def overfit_run_settings():
    """The learning test's run: 3 synthetic-world panoptic images, 128 x 128, 150 AdamW steps."""
    from vloss.training.overfit import OverfitConfig

    return OverfitConfig(num_images=3, size=128, steps=150, lr=1e-3, text_lr=1e-4, seed=0)


@pytest.fixture(scope="session")
def overfit_result(synthetic_world: Path):
    """One overfitting run of the ``tiny`` network (about a minute on one thread), shared by the
    learning test and the tests that need a trained checkpoint (no real weights exist here)."""
    from vloss.data.coco_panoptic import read_coco_panoptic
    from vloss.data.synthetic import load_world
    from vloss.training.overfit import overfit

    paths = load_world(synthetic_world)["paths"]["coco_panoptic"]
    dataset = read_coco_panoptic(paths["train_json"], paths["train_images"], paths["train_png_dir"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic and fastest on a shared 2-core machine
    try:
        return overfit(dataset, overfit_run_settings())
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def trained_tiny_weights(overfit_result, tmp_path_factory) -> Path:
    """The overfit network saved as a user's weights file (``save_model_weights``, config stored)."""
    path = tmp_path_factory.mktemp("trained") / "tiny_overfit.pt"
    save_model_weights(overfit_result.model, path, to_dict(overfit_result.config))
    return path
