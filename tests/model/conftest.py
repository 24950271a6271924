"""Fixtures for the model tests: small configs built from the tiny preset."""

from __future__ import annotations

import pytest
import torch

from vloss.config import VLOSSConfig, apply_overrides, tiny


def tiny_cfg(*overrides: str) -> VLOSSConfig:
    """The tiny preset with overrides applied."""
    return apply_overrides(tiny(), list(overrides))


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    """Seed, and run on one torch thread: the machines are shared, and OpenMP threads spin while
    waiting for a descheduled sibling, which made these small-tensor tests many times slower."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
