"""Fixtures for the model tests: small configs built from the tiny preset."""

from __future__ import annotations

import pytest
import torch

from vloss.config import VLOSSConfig, tiny
from vloss.config_io import apply_overrides


def tiny_cfg(*overrides: str) -> VLOSSConfig:
    """The tiny preset with overrides applied."""
    return apply_overrides(tiny(), list(overrides))


@pytest.fixture(autouse=True)
def _seed():
    """Every model test starts from the same RNG state (one torch thread: tests/conftest.py)."""
    torch.manual_seed(0)
