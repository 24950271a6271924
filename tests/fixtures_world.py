"""Session fixture ``synthetic_world``: one small synthetic world shared by every test.

Import it into a conftest (``from tests.fixtures_world import synthetic_world``). The
world is generated once per test session even when several conftests import the
fixture (the result is cached at module level).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vloss.data.synthetic import generate_world

WORLD_SEED = 0
_CACHE: dict[str, Path] = {}


@pytest.fixture(scope="session")
def synthetic_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of a ``--size small`` world with seed 0 (layout: docs/DATA_LAYOUT.md)."""
    if "root" not in _CACHE:
        root = tmp_path_factory.mktemp("synthetic_world") / "world"
        generate_world(root, seed=WORLD_SEED)
        _CACHE["root"] = root
    return _CACHE["root"]
