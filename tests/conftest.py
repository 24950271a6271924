"""Fixtures of the whole suite: real sample data, the synthetic world, teacher files, one Ray, one thread."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures_checkpoints import (  # noqa: F401
    overfit_result,
    tiny_checkpoint_dir,
    tiny_model,
    tiny_weights_file,
    trained_tiny_weights,
)
from tests.fixtures_s3 import s3_endpoint  # noqa: F401  (moto server for the object-storage tests)
from tests.fixtures_teacher import sample_source, synthetic_source, tiny_checkpoint, world  # noqa: F401
from tests.fixtures_world import synthetic_world  # noqa: F401  (session-wide synthetic world)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """One intra-op torch thread for the whole suite. The machines are 2 shared cores, and
    OpenMP threads spin while waiting for a descheduled sibling: small-tensor tests ran up to
    20x slower with 2 threads. (Ray workers get OMP_NUM_THREADS from their CPU share.)"""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def ray_session():
    """One embedded local Ray (2 CPUs) for every test that needs Ray, started the way jobs start it."""
    import ray

    from pipelines.common.ray_env import ensure_ray

    started = not ray.is_initialized()
    ensure_ray(2)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real sample data not found at {SHARED_DATA} (expected shared/ beside the checkout)")
    return SHARED_DATA
