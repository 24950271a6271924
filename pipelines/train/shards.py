"""Training shards: every training source in one Parquet schema with a ``task`` column.

Layout of a shard root::

    ROOT/gen-0001/panoptic/part-00000.parquet ...  + vocab.json   COCO panoptic (PNG+JSON) -> segment RLEs
    ROOT/gen-0001/detection/part-00000.parquet ... + vocab.json   Objects365 boxes + pseudo-mask shards
    ROOT/gen-0001/captions/part-00000.parquet ...                 COCO captions + extra image-text pairs
    ROOT/_manifest.json      the generation, every shard (rows, bytes, sha256), sources, counts, skips
    ROOT/_fingerprint.json   the plan the root belongs to (pipelines.common.output_set)

Row schema (one row per image, shared by all tasks)::

    task string, dataset string, image_id int64, file_name string,
    image binary (the encoded file as on disk), height int32, width int32,
    instances list<struct<id int64, category_id int64, label int32 (index into vocab.json),
                         isthing bool, iscrowd bool, bbox list<float64>[4],
                         segmentation binary (COCO compressed-RLE counts, size = [height, width]),
                         area int64, score float32>>,
    captions list<string>

Shards are planned on the driver from sorted image ids (deterministic names) and each is
built by one Ray Data task that reads its images and writes the file atomically, so a
re-run rebuilds only missing shards. Sources may be local paths or object-store URIs.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.common.output_set import shard_entry, verified_shards
from pipelines.common.shard_writer import ShardSetWriter, write_shard_file
from pipelines.common.shards import shard_name
from pipelines.common.storage import Location, locate, read_json, write_json_atomic
from pipelines.train.pass_plan import ROW_GROUP_ROWS
from vloss.progress import ProgressLine
from vloss.training.tasks import TASKS

INSTANCE_TYPE = pa.struct([
    ("id", pa.int64()),
    ("category_id", pa.int64()),
    ("label", pa.int32()),
    ("isthing", pa.bool_()),
    ("iscrowd", pa.bool_()),
    ("bbox", pa.list_(pa.float64(), 4)),
    ("segmentation", pa.binary()),
    ("area", pa.int64()),
    ("score", pa.float32()),
])
SCHEMA = pa.schema([
    ("task", pa.string()),
    ("dataset", pa.string()),
    ("image_id", pa.int64()),
    ("file_name", pa.string()),
    ("image", pa.binary()),
    ("height", pa.int32()),
    ("width", pa.int32()),
    ("instances", pa.list_(INSTANCE_TYPE)),
    ("captions", pa.list_(pa.string())),
])
VOCAB_NAME = "vocab.json"
MANIFEST_NAME = "_manifest.json"


@dataclass
class SourceImage:
    """One image of a training source, before its pixels are read.

    Args:
        image_id: id within its dataset.
        image_uri: path or URI of the encoded image.
        file_name: the dataset's own file name (kept for provenance).
        height, width: size from the annotation file.
        instances: instance dicts (``id, category_id, label, isthing, iscrowd, bbox`` and either
            ``segmentation`` (RLE counts bytes) or nothing when ``png_uri`` gives the masks).
        png_uri: panoptic PNG to turn into segment RLEs inside the shard task.
        captions: caption strings.
    """

    image_id: int
    image_uri: str
    file_name: str
    height: int
    width: int
    instances: list[dict] = field(default_factory=list)
    png_uri: str | None = None
    captions: list[str] = field(default_factory=list)


@dataclass
class TaskVocabulary:
    """Class names of one task's dataset; a row's ``label`` indexes ``names``."""

    dataset: str
    task: str
    category_ids: list[int]
    names: list[str]
    isthing: list[bool]

    def to_json(self) -> dict:
        return {"dataset": self.dataset, "task": self.task,
                "categories": [{"id": c, "name": n, "isthing": t}
                               for c, n, t in zip(self.category_ids, self.names, self.isthing)]}

    @classmethod
    def from_json(cls, obj: dict) -> "TaskVocabulary":
        cats = obj["categories"]
        return cls(obj["dataset"], obj["task"], [int(c["id"]) for c in cats],
                   [str(c["name"]) for c in cats], [bool(c["isthing"]) for c in cats])

    def label_of(self) -> dict[int, int]:
        return {cid: k for k, cid in enumerate(self.category_ids)}


def read_vocabulary(root: str | Location, task: str) -> TaskVocabulary:
    """The ``vocab.json`` stored beside a task's shards (in the manifest's generation)."""
    root = locate(root)
    generation = read_json(root.child(MANIFEST_NAME))["generation"]
    return TaskVocabulary.from_json(json.loads(root.child(generation, task, VOCAB_NAME).read_bytes()))


def _panoptic_instances(png_bytes: bytes, inst: list[dict], where: str, height: int, width: int) -> list[dict]:
    """Turn a panoptic PNG into one RLE per segment listed in ``inst``.

    The PNG must match its JSON record (COCO panoptic API rules): the image's size, and no
    segment id other than 0 (void) that the record does not list.
    """
    from PIL import Image
    from pycocotools import mask as mask_utils

    from vloss.data.masks import rgb2id

    ids = rgb2id(np.asarray(Image.open(io.BytesIO(png_bytes)).convert("RGB")))
    if ids.shape != (height, width):
        raise ValueError(f"{where}: the PNG is {ids.shape[1]}x{ids.shape[0]} (WxH) but the JSON says the image is "
                         f"{width}x{height}")
    unlisted = sorted(set(np.unique(ids).tolist()) - {0} - {int(seg["id"]) for seg in inst})
    if unlisted:
        raise ValueError(f"{where}: the PNG holds segment ids {unlisted[:10]} that the JSON does not list")
    out = []
    for seg in inst:
        m = ids == seg["id"]
        area = int(m.sum())
        if area == 0:
            raise ValueError(f"{where}: segment id {seg['id']} listed in the JSON is absent from the PNG")
        rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        out.append({**seg, "segmentation": rle["counts"], "area": area})
    return out


def _filled_boxes(inst: list[dict], height: int, width: int) -> list[dict]:
    """Instances without a mask get their clipped box, filled (the weakly-supervised baseline)."""
    from vloss.data.masks import encode_rle
    from vloss.teacher.output import box_extent_mask

    out = []
    for i in inst:
        if i.get("segmentation") is None:
            x, y, w, h = i["bbox"]
            mask = box_extent_mask((x, y, x + w, y + h), height, width)  # [H, W] bool
            i = {**i, "segmentation": encode_rle(mask)["counts"].encode("ascii"), "area": int(mask.sum())}
        out.append(i)
    return out


def _displayed_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) of an encoded image as a viewer shows it (EXIF rotation applied), from its
    header alone; None when the bytes are not an image Pillow knows (the transform reports it)."""
    from PIL import Image, UnidentifiedImageError

    from vloss.data.images import displayed_size

    try:
        with Image.open(io.BytesIO(data)) as im:
            return displayed_size(im)
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def build_rows(images: list[SourceImage], task: str, dataset: str) -> pa.Table:
    """Read the pixels (and panoptic PNGs) of ``images`` and make Parquet rows.

    Raises:
        ValueError: an image whose size differs from its annotation (names file and image id),
            found here rather than mid-training.
    """
    rows = []
    for im in images:
        image_bytes = locate(im.image_uri).read_bytes()
        inst = im.instances
        if im.png_uri is not None:
            inst = _panoptic_instances(locate(im.png_uri).read_bytes(), inst, f"{im.png_uri} image {im.image_id}",
                                       int(im.height), int(im.width))
        elif any(i.get("segmentation") is None for i in inst):
            inst = _filled_boxes(inst, im.height, im.width)
        size = _displayed_size(image_bytes)  # after the PNG's own checks, which name the PNG
        if size is not None and size != (int(im.height), int(im.width)):
            raise ValueError(f"{dataset} image {im.image_id} ({im.image_uri}): the image is {size[1]}x{size[0]} "
                             f"(WxH) but its annotation says {int(im.width)}x{int(im.height)}")
        rows.append({
            "task": task, "dataset": dataset, "image_id": int(im.image_id), "file_name": im.file_name,
            "image": image_bytes, "height": int(im.height), "width": int(im.width),
            "instances": [{"id": int(i["id"]), "category_id": int(i["category_id"]), "label": int(i["label"]),
                           "isthing": bool(i["isthing"]), "iscrowd": bool(i.get("iscrowd", False)),
                           "bbox": [float(v) for v in i["bbox"]], "segmentation": i["segmentation"],
                           "area": int(i["area"]), "score": float(i.get("score", 1.0))} for i in inst],
            "captions": list(im.captions),
        })
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def _write_one_shard(item: dict) -> dict:
    """Ray Data map function: build and atomically write one shard; returns its manifest entry (+ ``key``)."""
    images: list[SourceImage] = item["images"]
    table = build_rows(images, item["task"], item["dataset"])
    buf = io.BytesIO()
    # fixed row groups: the unit a training pass reads and shuffles (pipelines.train.pass_plan); page
    # checksums: a damaged or altered page is refused where it is read, without hashing whole shards
    pq.write_table(table, buf, row_group_size=ROW_GROUP_ROWS, write_page_checksum=True)
    data = buf.getvalue()
    write_shard_file(item["out"], data)
    return {**shard_entry(item["name"], data, table.num_rows), "key": item["key"]}


def _check_ids(loc: Location, image_ids: list[int]) -> tuple[bool, int]:
    """The content check of a kept shard: it holds exactly ``image_ids``, in order."""
    with loc.fs.open_input_file(loc.path) as f:
        ids = pq.read_table(f, columns=["image_id"]).column("image_id").to_pylist()
    if ids != image_ids:
        raise ValueError("images differ from the plan")
    return True, len(ids)


def write_task_shards(images: Iterable[SourceImage], shards: ShardSetWriter, task: str, dataset: str,
                      vocab: TaskVocabulary | None, rows_per_shard: int = 256) -> dict[str, Any]:
    """Write one task's shards under ``<generation>/task`` with Ray Data (one task per shard).

    Shards already there that pass the writer's rule and hold exactly their planned images are
    kept (a re-run of the same plan completes what is missing); everything else is rebuilt.

    Args:
        images: the source images (sorted by id here, so names are deterministic).
        shards: the writer of the claimed shard root.
        task: one of ``TASKS``.
        dataset: source dataset name stored in every row.
        vocab: the task's vocabulary (None for captions).
        rows_per_shard: images per shard.

    Returns:
        ``{"counts": {"images", "instances", "shards", "kept", "written"}, "entries": [manifest entries]}``.
    """
    import ray

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    if rows_per_shard < 1:
        raise ValueError("rows_per_shard must be >= 1")
    out_dir = shards.folder.child(task)
    out_dir.makedirs()
    ordered = sorted(images, key=lambda im: im.image_id)
    items, names = [], []
    for k in range(0, len(ordered), rows_per_shard):
        chunk = ordered[k:k + rows_per_shard]
        name = f"{task}/{shard_name(k // rows_per_shard)}"
        names.append(name)
        ids = [im.image_id for im in chunk]
        if not shards.kept(name, lambda loc, ids=ids: _check_ids(loc, ids)):
            items.append({"images": chunk, "out": shards.folder.child(name), "name": shards.entry_name(name),
                          "key": name, "task": task, "dataset": dataset})
    if vocab is not None:
        write_json_atomic(out_dir.child(VOCAB_NAME), vocab.to_json())
    if items:
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        line = ProgressLine(f"shards:{task}", len(items), unit="shard")
        for row in ds.map(_write_one_shard, num_cpus=0.5).iter_rows():
            row = dict(row)
            shards.add(row.pop("key"), row)
            line.update(1)
        line.close()
    return {"counts": {"images": len(ordered), "instances": int(sum(len(im.instances) for im in ordered)),
                       "shards": len(names), "kept": len(names) - len(items), "written": len(items)},
            "entries": [shards.entries[n] for n in names]}


def shard_set(root: str | Location, check_sha: bool = False) -> tuple[dict, list[Location]]:
    """The manifest and shard files of a shard root (refuses an incomplete set or a changed size).

    Whole-file checksums are compared only with ``check_sha``: a training start must not read the
    whole dataset; the page checksums written into every shard are verified where it is read.
    """
    return verified_shards(root, MANIFEST_NAME, allowed=(VOCAB_NAME,), check_sha=check_sha)


def task_shard_locations(root: str | Location, task: str) -> list[Location]:
    """A task's shard files, verified against the manifest, in index order."""
    manifest, locs = shard_set(root)
    prefix = f"{manifest['generation']}/{task}/"
    return [loc for e, loc in zip(manifest["shards"], locs) if e["name"].startswith(prefix)]


def task_shard_paths(root: str | Location, task: str) -> list[str]:
    """Paths (filesystem-relative) of a task's shards, for ``ray.data.read_parquet``."""
    return [loc.path for loc in task_shard_locations(root, task)]


def count_rows(root: str | Location, task: str) -> int:
    """Number of images in a task's shards (from the manifest; the set is verified first)."""
    manifest, _ = shard_set(root)
    prefix = f"{manifest['generation']}/{task}/"
    return sum(int(e["rows"]) for e in manifest["shards"] if e["name"].startswith(prefix))


def iter_rows(root: str | Location, task: str, columns: list[str] | None = None,
              transform: Callable[[dict], Any] | None = None):
    """Stream a task's rows back as dicts (tests, exports, debugging)."""
    for loc in task_shard_locations(root, task):
        with loc.fs.open_input_file(loc.path) as f:
            for row in pq.read_table(f, columns=columns).to_pylist():
                yield transform(row) if transform else row
