"""Shared fixtures: paths to the real sample data beside the checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures_world import synthetic_world  # noqa: F401  (session-wide synthetic world)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real sample data not found at {SHARED_DATA} (expected shared/ beside the checkout)")
    return SHARED_DATA
