"""Fixtures of the data tests (the shared world fixture lives in tests/fixtures_world.py)."""

from tests.fixtures_world import synthetic_world  # noqa: F401  (pytest fixture)
