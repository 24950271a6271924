"""Fixtures for the training job: training shards built from the session's synthetic world."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def train_shards(synthetic_world: Path, tmp_path_factory) -> Path:
    """Pseudo masks (box backend) + training shards of the synthetic world, built once."""
    from pipelines.ray_env import ensure_ray
    from pipelines.train_job import prepare_shards

    ensure_ray(2)
    work = tmp_path_factory.mktemp("train_data")
    return Path(prepare_shards(str(synthetic_world), str(work), rows_per_shard=32))
