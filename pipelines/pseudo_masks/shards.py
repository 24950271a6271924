"""Pseudo-mask shards: layout, atomic writing, validation, reading and COCO export.

Layout of an output directory::

    OUT/part-00000.parquet ...   one row per image (sorted image ids, ``rows_per_shard`` each)
    OUT/_manifest.json           inputs, checkpoint sha256, backend, counts, errors
    OUT/_errors.jsonl            one JSON line per failed image (image id, file, reason)

Row schema: ``image_id int64, file_name string, height int32, width int32,
instances list<struct<id int64, category_id int64, bbox list<float64>[4] (COCO xywh,
clipped), segmentation binary (COCO compressed-RLE counts; size is [height, width]),
area int64 (mask pixels), score float32 (mask score), clipped bool, teacher_label int64>>``.

Each shard's Parquet footer carries ``vloss.pseudo_masks`` metadata: its index, the
image ids assigned to it, the images that failed (with reasons) and a fingerprint of
its inputs (run settings + the boxes of its images). A shard is *valid* when the file
reads completely, the fingerprint matches, and its rows plus its failures are exactly
the assigned image ids with each given box once. Valid shards are skipped on re-runs.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.io import Location, locate, read_json, write_json_atomic
from vloss.data.masks import decode_rle
from vloss.teacher.boxes import ImageBoxes

META_KEY = b"vloss.pseudo_masks"
FORMAT_VERSION = 1
MANIFEST_NAME = "_manifest.json"
ERRORS_NAME = "_errors.jsonl"
SHARD_RE = re.compile(r"^part-(\d{5,})\.parquet$")

INSTANCE_TYPE = pa.struct([
    ("id", pa.int64()),
    ("category_id", pa.int64()),
    ("bbox", pa.list_(pa.float64(), 4)),
    ("segmentation", pa.binary()),
    ("area", pa.int64()),
    ("score", pa.float32()),
    ("clipped", pa.bool_()),
    ("teacher_label", pa.int64()),
])
SCHEMA = pa.schema([
    ("image_id", pa.int64()),
    ("file_name", pa.string()),
    ("height", pa.int32()),
    ("width", pa.int32()),
    ("instances", pa.list_(INSTANCE_TYPE)),
])


def shard_name(index: int) -> str:
    """Deterministic shard file name: ``part-00000.parquet``."""
    return f"part-{index:05d}.parquet"


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
            "num_boxes": self.spec.num_boxes,
            "num_clipped": sum(int(b.clipped) for im in self.spec.images for b in im.instances),
        }


def shard_table(result: ShardResult) -> pa.Table:
    """The shard as an Arrow table, rows sorted by image id, footer metadata attached."""
    rows = sorted(result.rows, key=lambda r: r["image_id"])
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    return table.replace_schema_metadata({META_KEY: json.dumps(result.metadata()).encode()})


def write_shard(out: Location, result: ShardResult) -> None:
    """Serialise and commit a shard atomically (temp name in the same dir, then rename)."""
    buf = io.BytesIO()
    pq.write_table(shard_table(result), buf, compression="zstd")
    out.child(result.spec.name).write_bytes_atomic(buf.getvalue())


def read_shard(loc: Location) -> tuple[pa.Table, dict]:
    """Read a whole shard and its footer metadata (raises on unreadable files)."""
    table = pq.read_table(io.BytesIO(loc.read_bytes()))
    meta = (table.schema.metadata or {}).get(META_KEY)
    if meta is None:
        raise ValueError(f"{loc.uri}: no {META_KEY.decode()} footer metadata")
    return table, json.loads(meta)


def validate_shard(out: Location, spec: ShardSpec) -> tuple[dict | None, str]:
    """Check an existing shard file against its plan.

    Returns:
        ``(metadata, "ok")`` when the shard can be kept, else ``(None, reason)``.
    """
    loc = out.child(spec.name)
    if not loc.is_file():
        return None, "missing"
    try:
        table, meta = read_shard(loc)
    except Exception as exc:  # truncated / corrupted Parquet, bad footer JSON
        return None, f"unreadable ({type(exc).__name__}: {exc})"
    if meta.get("fingerprint") != spec.fingerprint or meta.get("image_ids") != spec.image_ids:
        return None, "inputs or settings changed"
    if not table.schema.remove_metadata().equals(SCHEMA):
        return None, "schema differs"
    row_ids = table.column("image_id").to_pylist()
    failed_ids = [f["image_id"] for f in meta.get("failed", [])]
    if sorted(row_ids + failed_ids) != spec.image_ids or len(set(row_ids)) != len(row_ids):
        return None, "image ids differ from the plan"
    expected = {im.image_id: sorted(b.ann_id for b in im.instances) for im in spec.images}
    for iid, insts in zip(row_ids, table.column("instances").to_pylist()):
        if sorted(i["id"] for i in insts) != expected[iid]:
            return None, f"image {iid} does not hold each of its boxes exactly once"
    return meta, "ok"


def shard_locations(out: str | Location) -> list[Location]:
    """The ``part-*.parquet`` files of an output directory, in index order."""
    out = locate(out)
    return [out.child(n) for n in out.list_names() if SHARD_RE.match(n)]


def iter_records(out: str | Location, *, decode_masks: bool = True) -> Iterator[dict]:
    """Stream pseudo-mask records back, image by image, in image-id order.

    Args:
        out: the job's output directory (path or URI).
        decode_masks: add ``mask`` ([H, W] bool, decoded with pycocotools) to each instance.
    Yields:
        ``{"image_id", "file_name", "height", "width", "instances": [{"id", "category_id",
        "bbox", "segmentation": {"size", "counts"}, "area", "score", "clipped",
        "teacher_label"[, "mask"]}]}``.
    """
    for loc in shard_locations(out):
        table, _ = read_shard(loc)
        for row in table.to_pylist():
            h, w = int(row["height"]), int(row["width"])
            for inst in row["instances"]:
                inst["segmentation"] = {"size": [h, w], "counts": inst["segmentation"].decode("ascii")}
                if decode_masks:
                    inst["mask"] = decode_rle(inst["segmentation"])
            yield row


def record_to_target(record: dict) -> dict[str, np.ndarray]:
    """Training target from one record.

    Returns:
        ``{"image_id": int, "masks": [N, H, W] bool, "labels": [N] int64 (category ids),
        "boxes": [N, 4] float32 xyxy, "scores": [N] float32}``.
    """
    h, w = int(record["height"]), int(record["width"])
    insts = record["instances"]
    masks = np.zeros((len(insts), h, w), dtype=bool)
    for i, inst in enumerate(insts):
        masks[i] = inst["mask"] if "mask" in inst else decode_rle(inst["segmentation"])
    boxes = np.array([[b[0], b[1], b[0] + b[2], b[1] + b[3]] for b in (i["bbox"] for i in insts)],
                     dtype=np.float32).reshape(-1, 4)
    return {"image_id": int(record["image_id"]), "masks": masks,
            "labels": np.array([i["category_id"] for i in insts], dtype=np.int64),
            "boxes": boxes, "scores": np.array([i["score"] for i in insts], dtype=np.float32)}


def export_coco(out: str | Location, dest: str | Location, categories: list[dict] | None = None) -> dict:
    """Write the pseudo masks as a COCO instances JSON with RLE ``segmentation``.

    Args:
        out: the job's output directory.
        dest: path/URI of the JSON to write.
        categories: category records; defaults to those saved in the manifest.
    Returns:
        the COCO dict that was written.
    """
    out = locate(out)
    dest = locate(dest)
    if categories is None:
        manifest_loc = out.child(MANIFEST_NAME)
        categories = read_json(manifest_loc).get("categories", []) if manifest_loc.is_file() else []
    images, annotations = [], []
    for rec in iter_records(out, decode_masks=False):
        images.append({"id": rec["image_id"], "file_name": rec["file_name"],
                       "height": rec["height"], "width": rec["width"]})
        for inst in rec["instances"]:
            annotations.append({"id": inst["id"], "image_id": rec["image_id"],
                                "category_id": inst["category_id"], "bbox": list(inst["bbox"]),
                                "area": int(inst["area"]), "iscrowd": 0, "score": float(inst["score"]),
                                "segmentation": inst["segmentation"]})
    coco = {"images": images, "annotations": annotations, "categories": categories}
    write_json_atomic(dest, coco)
    return coco


def read_manifest(out: str | Location) -> dict[str, Any]:
    out = locate(out)
    return read_json(out.child(MANIFEST_NAME))
