"""Fixtures for the training job: training shards built from the session's synthetic world."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def train_shards(synthetic_world: Path, ray_session, tmp_path_factory) -> Path:
    """The chain a user runs: the pseudo-mask job (box backend) over the world's Objects365 boxes,
    then training shards from the world and those pseudo masks; built once."""
    from pipelines.pseudo_masks.config import PseudoMaskJobConfig
    from pipelines.pseudo_masks.job import run_pseudo_masks
    from pipelines.train.job import prepare_shards
    from vloss.teacher.config import TeacherConfig

    work = tmp_path_factory.mktemp("train_data")
    o365 = synthetic_world / "objects365"
    run_pseudo_masks(PseudoMaskJobConfig(annotations=str(o365 / "annotations" / "train.json"),
                                         images=str(o365 / "images" / "train"), out=str(work / "pseudo_masks"),
                                         teacher=TeacherConfig(backend="box"), rows_per_shard=32))
    return Path(prepare_shards(str(synthetic_world), str(work), pseudo_masks=str(work / "pseudo_masks"),
                               extra_image_text=True,
                               rows_per_shard=32))
