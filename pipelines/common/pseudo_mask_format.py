"""The pseudo-mask output format: the contract between the pseudo-mask stage and its readers.

Layout of an output directory::

    OUT/gen-0001/part-00000.parquet ...   one row per image (sorted image ids, ``rows_per_shard`` each)
    OUT/_manifest.json           the generation, every shard (rows, bytes, sha256), inputs, counts, errors
    OUT/_fingerprint.json        the plan the directory belongs to (see pipelines.common.output_set)
    OUT/_errors.jsonl            one JSON line per failed image (image id, file, reason)
    OUT/_config.json             the resolved job config

Row schema: ``image_id int64, file_name string, height int32, width int32,
instances list<struct<id int64, category_id int64, bbox list<float64>[4] (COCO xywh,
clipped), segmentation binary (COCO compressed-RLE counts; size is [height, width]),
area int64 (mask pixels), score float32 (mask score), clipped bool, teacher_label int64>>``.

Each shard's Parquet footer carries ``vloss.pseudo_masks`` metadata (see
:mod:`pipelines.pseudo_masks.shards`, which writes and validates shards). The training stage
reads the records through this module, never through the pseudo-mask stage.
"""

from __future__ import annotations

import io
import json
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.common.output_set import verified_shards
from pipelines.common.storage import Location, locate, read_json, write_json_atomic
from vloss.data.masks import decode_rle

META_KEY = b"vloss.pseudo_masks"
FORMAT_VERSION = 1
MANIFEST_NAME = "_manifest.json"
ERRORS_NAME = "_errors.jsonl"
CONFIG_NAME = "_config.json"

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


def read_shard(loc: Location) -> tuple[pa.Table, dict]:
    """Read a whole shard and its footer metadata (raises on unreadable files)."""
    table = pq.read_table(io.BytesIO(loc.read_bytes()))
    meta = (table.schema.metadata or {}).get(META_KEY)
    if meta is None:
        raise ValueError(f"{loc.uri}: no {META_KEY.decode()} footer metadata")
    return table, json.loads(meta)


def pseudo_mask_shards(out: str | Location) -> list[Location]:
    """The shard files of a finished output, verified against its manifest (exact set, unchanged files).

    Raises:
        ShardSetError: no manifest (the job did not finish), or files missing, changed or extra.
    """
    return verified_shards(out, MANIFEST_NAME)[1]


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
    for loc in pseudo_mask_shards(out):
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
