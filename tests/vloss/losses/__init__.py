"""Tests of vloss.losses."""
