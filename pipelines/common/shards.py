"""One naming scheme for every shard set the pipelines write (pseudo masks, training shards).

Shards are ``part-00000.parquet``, ``part-00001.parquet``, ...: the index is the shard's
position in a deterministic plan (sorted image ids), so a re-run maps every image to the same
file name and can complete exactly the shards that are missing.
"""

from __future__ import annotations

import re

from pipelines.common.storage import Location, locate

SHARD_RE = re.compile(r"^part-(\d{5,})\.parquet$")


def shard_name(index: int) -> str:
    """Deterministic shard file name: ``part-00000.parquet``."""
    return f"part-{index:05d}.parquet"


def shard_names(directory: str | Location) -> list[str]:
    """Names of the ``part-*.parquet`` files directly under ``directory``, in index order."""
    return [n for n in locate(directory).list_names() if SHARD_RE.match(n)]
