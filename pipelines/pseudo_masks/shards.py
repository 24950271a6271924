"""Pseudo-mask shards: planning, atomic writing and validation (the stage's side of the format).

The format itself (schema, footer key, reading) is :mod:`pipelines.common.pseudo_mask_format`.
Each shard's Parquet footer carries ``vloss.pseudo_masks`` metadata: its index, the image ids
assigned to it, the images that failed (with reasons) and a fingerprint of its inputs (run
settings + the boxes of its images). A shard is *valid* when the file reads completely, the
fingerprint matches, and its rows plus its failures are exactly the assigned image ids with
each given box once (:func:`check_shard`, after the shard writer's checksum rule). Valid shards
are skipped on re-runs.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.common.pseudo_mask_format import FORMAT_VERSION, META_KEY, SCHEMA, read_shard
from pipelines.common.shards import shard_name
from pipelines.common.storage import Location
from vloss.teacher.boxes import ImageBoxes


@dataclass
class ShardSpec:
    """One planned shard.

    Args:
        index: shard number (position of its images in sorted image-id order / rows_per_shard).
        images: its images, sorted by id.
        fingerprint: sha256 over the run settings and these images' boxes.
    """

    index: int
    images: list[ImageBoxes]
    fingerprint: str

    @property
    def name(self) -> str:
        return shard_name(self.index)

    @property
    def image_ids(self) -> list[int]:
        return [im.image_id for im in self.images]

    @property
    def num_boxes(self) -> int:
        return sum(len(im.instances) for im in self.images)


def plan_shards(images: list[ImageBoxes], rows_per_shard: int, run_key: dict) -> list[ShardSpec]:
    """Group images (sorted by id) into consecutive shards of ``rows_per_shard``.

    Args:
        images: images with at least one box, sorted by image id.
        rows_per_shard: rows (images) per shard.
        run_key: settings that change the output (backend, checkpoint sha256, ...).
    """
    if rows_per_shard <= 0:
        raise ValueError(f"rows_per_shard must be positive, got {rows_per_shard}")
    ids = [im.image_id for im in images]
    if ids != sorted(ids):
        raise ValueError("images must be sorted by image id")
    specs = []
    key = json.dumps(run_key, sort_keys=True)
    for index, start in enumerate(range(0, len(images), rows_per_shard)):
        chunk = images[start:start + rows_per_shard]
        h = hashlib.sha256(f"v{FORMAT_VERSION}|{key}|{rows_per_shard}|".encode())
        for im in chunk:
            h.update(f"{im.image_id}|{im.file_name}|{im.height}|{im.width}|".encode())
            for b in im.instances:
                h.update(f"{b.ann_id},{b.category_id},{b.bbox!r},{b.clipped};".encode())
        specs.append(ShardSpec(index, chunk, h.hexdigest()))
    return specs


@dataclass
class ShardResult:
    """Rows and failures of one completed shard (what its footer records).

    Args:
        spec: the planned shard.
        rows: output rows (dicts matching ``SCHEMA``).
        failed: ``{"image_id", "file_name", "reason"}`` per failed image.
    """

    spec: ShardSpec
    rows: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)

    @property
    def done(self) -> int:
        return len(self.rows) + len(self.failed)

    def metadata(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "shard_index": self.spec.index,
            "fingerprint": self.spec.fingerprint,
            "image_ids": self.spec.image_ids,
            "failed": sorted(self.failed, key=lambda f: f["image_id"]),
            "num_rows": len(self.rows),
            "num_masks": sum(len(r["instances"]) for r in self.rows),
            "num_empty_masks": sum(1 for r in self.rows for i in r["instances"] if i["area"] == 0),
            "num_boxes": self.spec.num_boxes,
            "num_clipped": sum(int(b.clipped) for im in self.spec.images for b in im.instances),
        }


def shard_table(result: ShardResult) -> pa.Table:
    """The shard as an Arrow table, rows sorted by image id, footer metadata attached."""
    rows = sorted(result.rows, key=lambda r: r["image_id"])
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    return table.replace_schema_metadata({META_KEY: json.dumps(result.metadata()).encode()})


def shard_bytes(result: ShardResult) -> bytes:
    """The shard serialised (zstd Parquet); written by :class:`pipelines.common.shard_writer.ShardSetWriter`."""
    buf = io.BytesIO()
    pq.write_table(shard_table(result), buf, compression="zstd")
    return buf.getvalue()


def check_shard(loc: Location, spec: ShardSpec) -> tuple[dict, int]:
    """The content check of an existing shard against its plan (the writer checked its bytes' sha256).

    Returns:
        its footer metadata and row count.

    Raises:
        ValueError: it must be rebuilt (the message says why); shards with failed images are retried.
    """
    try:
        table, meta = read_shard(loc)
        if not isinstance(meta, dict):
            raise ValueError("footer metadata is not an object")
    except Exception as exc:  # truncated / corrupted Parquet, bad footer JSON
        raise ValueError(f"unreadable ({type(exc).__name__}: {exc})") from None
    if meta.get("fingerprint") != spec.fingerprint or meta.get("image_ids") != spec.image_ids:
        raise ValueError("inputs or settings changed")
    if not table.schema.remove_metadata().equals(SCHEMA):
        raise ValueError("schema differs")
    row_ids = table.column("image_id").to_pylist()
    failed_ids = [f["image_id"] for f in meta.get("failed", [])]
    if sorted(row_ids + failed_ids) != spec.image_ids or len(set(row_ids)) != len(row_ids):
        raise ValueError("image ids differ from the plan")
    expected = {im.image_id: sorted(b.ann_id for b in im.instances) for im in spec.images}
    for iid, insts in zip(row_ids, table.column("instances").to_pylist()):
        if sorted(i["id"] for i in insts) != expected[iid]:
            raise ValueError(f"image {iid} does not hold each of its boxes exactly once")
    if failed_ids:
        raise ValueError("retrying its failed images")
    return meta, int(meta["num_rows"])
