"""Training sources -> training shards: COCO panoptic, Objects365 + pseudo masks, captions.

``TrainingSources`` names every input file; ``TrainingSources.from_layout(root)`` fills them
in from the standard layouts of ``docs/DATA_LAYOUT.md`` (the real datasets' layouts, which the
synthetic world also uses). ``build_training_shards`` reads the annotation files on the driver
(validating them, with errors naming file and field), then writes the shards with Ray Data.
Every source may be a local path or an object-store URI (``s3://``, ``gs://``, ``file://``):
annotation JSONs are fetched to a temporary file for the readers, and image / PNG URIs are
joined to the user's roots and read inside the shard tasks.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

import pyarrow.fs as pafs

from pipelines.common.output_set import ShardSetError, manifest_identity
from pipelines.common.pseudo_mask_format import MANIFEST_NAME as PSEUDO_MANIFEST
from pipelines.common.pseudo_mask_format import iter_records
from pipelines.common.shard_writer import ShardSetWriter
from pipelines.common.storage import locate, read_json
from pipelines.train.pass_plan import ROW_GROUP_ROWS
from pipelines.train.shards import MANIFEST_NAME, VOCAB_NAME, SourceImage, TaskVocabulary, shard_set, write_task_shards
from vloss.data.coco_captions import read_coco_captions
from vloss.data.coco_detection import read_coco_detection
from vloss.data.coco_panoptic import read_coco_panoptic
from vloss.teacher.boxes import parse_detection_input


@dataclass
class CaptionSource:
    json: str
    images: str
    name: str


@dataclass
class TrainingSources:
    """Every input of the training shards.

    Args:
        panoptic_json, panoptic_images, panoptic_png_dir: COCO panoptic train split.
        detection_json, detection_images: Objects365-style boxes (COCO detection JSON).
        pseudo_masks: output directory of ``jobs/pseudo_masks.py`` for those boxes.
        box_masks: train detection on the filled (clipped) boxes instead of pseudo masks: the
            weakly-supervised baseline of Sec. 3.2, never chosen silently.
        captions: caption sources (COCO captions JSON + image dir), merged into one task.
        val_json, val_images, val_png_dir: the panoptic val split, scored during training.
    """

    panoptic_json: str | None = None
    panoptic_images: str | None = None
    panoptic_png_dir: str | None = None
    detection_json: str | None = None
    detection_images: str | None = None
    pseudo_masks: str | None = None
    box_masks: bool = False
    captions: list[CaptionSource] = field(default_factory=list)
    val_json: str | None = None
    val_images: str | None = None
    val_png_dir: str | None = None

    @classmethod
    def from_data(cls, data: str, extra_image_text: bool = False) -> "TrainingSources":
        """The sources ``--data`` names: a sources file (``*.json``, :mod:`pipelines.train.sources_file`,
        ``docs/CUSTOM_DATA.md``) or a data root laid out as ``docs/DATA_LAYOUT.md``.

        Raises:
            SourcesFileError: a sources file that cannot be used.
            ValueError: ``extra_image_text`` with a sources file (list the captions in it instead).
            FileNotFoundError: see :meth:`from_layout`.
        """
        from pipelines.train.sources_file import is_sources_file, read_sources_file

        if not is_sources_file(data):
            return cls.from_layout(data, extra_image_text=extra_image_text)
        if extra_image_text:
            raise ValueError(f"--extra-image-text adds a data root's image_text/; with the sources file {data}, "
                             f"list every caption file in its captions section instead")
        spec = read_sources_file(data)
        return cls(**{**spec, "captions": [CaptionSource(**c) for c in spec["captions"]]})

    @classmethod
    def from_layout(cls, root: str, pseudo_masks: str | None = None,
                    extra_image_text: bool = False) -> "TrainingSources":
        """Sources under a data root laid out as ``docs/DATA_LAYOUT.md``.

        COCO Captions is the paper's image-text source and is required. The extra image-text
        source (``image_text/``) is used only when asked for (``extra_image_text``; ``--extra-image-text``
        of the training job): no recipe of the paper trains on it, so it is never added silently.

        Raises:
            FileNotFoundError: ``extra_image_text`` but ``image_text/`` has no annotation file.
        """
        j = lambda *p: os.path.join(root, *p)  # noqa: E731
        captions = [CaptionSource(j("coco_panoptic", "annotations", "captions_train2017.json"),
                                  j("coco_panoptic", "train2017"), "coco_captions")]
        extra = CaptionSource(j("image_text", "annotations", "captions.json"), j("image_text", "images"), "image_text")
        if extra_image_text:
            if not locate(extra.json).exists():
                raise FileNotFoundError(f"--extra-image-text: no {extra.json} (the layout of docs/DATA_LAYOUT.md)")
            captions.append(extra)
        return cls(
            panoptic_json=j("coco_panoptic", "annotations", "panoptic_train2017.json"),
            panoptic_images=j("coco_panoptic", "train2017"),
            panoptic_png_dir=j("coco_panoptic", "annotations", "panoptic_train2017"),
            detection_json=j("objects365", "annotations", "train.json"),
            detection_images=j("objects365", "images", "train"),
            pseudo_masks=pseudo_masks,
            captions=captions,
            val_json=j("coco_panoptic", "annotations", "panoptic_val2017.json"),
            val_images=j("coco_panoptic", "val2017"),
            val_png_dir=j("coco_panoptic", "annotations", "panoptic_val2017"),
        )


@contextmanager
def local_json(uri: str) -> Iterator[str]:
    """A local path holding the JSON at ``uri`` (object-store files are fetched to a temp file)."""
    loc = locate(uri)
    if isinstance(loc.fs, pafs.LocalFileSystem):  # a local path or a file:// URI
        yield loc.path
        return
    with tempfile.TemporaryDirectory(prefix="vloss-json-") as tmp:
        path = os.path.join(tmp, os.path.basename(loc.path) or "annotations.json")
        with open(path, "wb") as f:
            f.write(loc.read_bytes())
        yield path


def _under(root: str, name: str) -> str:
    """``name`` under ``root``, where root is a local path or an object-store URI."""
    return locate(root).child(name).uri


def panoptic_sources(json_path: str, image_dir: str, png_dir: str) -> tuple[list[SourceImage], TaskVocabulary]:
    """COCO panoptic train split -> source images (segment masks read from the PNG later)."""
    with local_json(json_path) as path:
        ds = read_coco_panoptic(path, image_dir, png_dir)
    vocab = TaskVocabulary("coco_panoptic", "panoptic", [c.id for c in ds.categories],
                       [c.name for c in ds.categories], [bool(c.isthing) for c in ds.categories])
    label = vocab.label_of()
    out = []
    for im in ds.images:
        insts = [{"id": s.id, "category_id": s.category_id, "label": label[s.category_id], "isthing": s.isthing,
                  "iscrowd": bool(s.iscrowd), "bbox": list(s.bbox), "area": int(s.area)} for s in im.segments]
        out.append(SourceImage(int(im.id), _under(image_dir, im.file_name), im.file_name, im.height, im.width,
                               insts, png_uri=_under(png_dir, os.path.basename(im.png_path))))
    return out, vocab


def _pseudo_mask_instances(pseudo_dir: str) -> dict[int, dict[int, dict]]:
    """image id -> annotation id -> pseudo-mask record instance (RLE counts as ASCII bytes)."""
    out: dict[int, dict[int, dict]] = {}
    for rec in iter_records(pseudo_dir, decode_masks=False):
        out[int(rec["image_id"])] = {int(i["id"]): {"bbox": list(i["bbox"]),
                                                    "segmentation": i["segmentation"]["counts"].encode("ascii"),
                                                    "area": int(i["area"]), "score": float(i["score"])}
                                     for i in rec["instances"]}
    return out


def _box_instances(json_path: str) -> dict[int, dict[int, dict]]:
    """image id -> annotation id -> the clipped box, to be filled into its mask in the shard task."""
    loc = locate(json_path)
    det = parse_detection_input(read_json(loc), loc.uri)
    return {im.image_id: {b.ann_id: {"bbox": list(b.bbox), "segmentation": None, "area": None, "score": 1.0}
                          for b in im.instances} for im in det.images}


def detection_sources(json_path: str, image_dir: str, pseudo_dir: str | None, box_masks: bool = False
                      ) -> tuple[list[SourceImage], TaskVocabulary, dict[str, int]]:
    """Objects365 boxes joined with their pseudo masks (by annotation id), or with filled boxes.

    Images the pseudo-mask job could not process, and boxes without a pseudo mask, are
    skipped and counted (never silently): the counts come back for the manifest.

    Args:
        json_path: the detection JSON (path or URI).
        image_dir: its image root.
        pseudo_dir: the pseudo-mask output for these boxes (None with ``box_masks``).
        box_masks: fill each clipped box instead (the weakly-supervised baseline).
    """
    if (pseudo_dir is None) == (not box_masks):
        raise ValueError("detection sources need exactly one of: a pseudo-mask output, or box_masks=True")
    with local_json(json_path) as path:
        ds = read_coco_detection(path, image_dir)
    vocab = TaskVocabulary("objects365", "detection", [c.id for c in ds.categories],
                       [c.name for c in ds.categories], [True] * len(ds.categories))
    label = vocab.label_of()
    masks = _box_instances(json_path) if box_masks else _pseudo_mask_instances(pseudo_dir)
    counts = {"images_without_pseudo_masks": 0, "boxes_without_pseudo_mask": 0, "images_without_boxes": 0}
    out = []
    for im in ds.images:
        if not im.annotations:
            counts["images_without_boxes"] += 1
            continue
        by_id = masks.get(int(im.id))
        if by_id is None:
            counts["images_without_pseudo_masks"] += 1
            continue
        insts = []
        for a in im.annotations:
            p = by_id.get(int(a.id))
            if p is None:
                counts["boxes_without_pseudo_mask"] += 1
                continue
            insts.append({"id": a.id, "category_id": a.category_id, "label": label[a.category_id],
                          "isthing": True, "iscrowd": bool(a.iscrowd), **p})
        if insts:
            out.append(SourceImage(int(im.id), _under(image_dir, im.file_name), im.file_name, im.height, im.width,
                                   insts))
    return out, vocab, counts


def caption_sources(sources: list[CaptionSource]) -> list[tuple[str, list[SourceImage]]]:
    """Caption files -> per-source lists of source images (images without captions skipped)."""
    out = []
    for src in sources:
        with local_json(src.json) as path:
            ds = read_coco_captions(path, src.images)
        imgs = [SourceImage(int(im.id), _under(src.images, im.file_name), im.file_name, im.height or 0, im.width or 0,
                            captions=list(im.captions)) for im in ds.images if im.captions]
        out.append((src.name, imgs))
    return out


def pseudo_mask_identity(pseudo_masks: str) -> str:
    """The content of a pseudo-mask output (:func:`pipelines.common.output_set.manifest_identity`),
    not its manifest file's hash: every run rewrites run bookkeeping into that file."""
    return manifest_identity(read_json(locate(pseudo_masks).child(PSEUDO_MANIFEST)))


def shards_fingerprint(sources: TrainingSources, rows_per_shard: int) -> dict[str, Any]:
    """What determines a shard root: the annotation files' contents, the masks' source, the sharding.

    File locations (image roots) are not part of it: moving the data continues the same plan.
    """
    def sha(uri: str | None) -> str | None:
        return locate(uri).sha256() if uri else None

    masks = None
    if sources.detection_json:
        masks = "filled boxes" if sources.box_masks else pseudo_mask_identity(sources.pseudo_masks)
    return {"format": 2, "rows_per_shard": rows_per_shard, "row_group_rows": ROW_GROUP_ROWS,
            "panoptic_json_sha256": sha(sources.panoptic_json),
            "detection_json_sha256": sha(sources.detection_json), "detection_masks": masks,
            "captions": [[c.name, sha(c.json)] for c in sources.captions]}


def build_training_shards(sources: TrainingSources, out: str, rows_per_shard: int = 256,
                          overwrite: bool = False) -> dict[str, Any]:
    """Write panoptic / detection / captions shards under ``out`` and switch the manifest in last.

    The root is claimed for this plan first (:func:`shards_fingerprint`): a complete set of the same
    plan is returned as it is, an incomplete one completed; another plan's root is refused unless
    ``overwrite`` (a new generation). A task whose inputs are not given is left out (e.g. the
    Mask2Former+CLIP baseline needs panoptic (+ captions) only). Returns the manifest.

    Raises:
        OutputConflictError: ``out`` holds shards of another plan.
    """
    with ShardSetWriter(out, shards_fingerprint(sources, rows_per_shard), what="training shards",
                        overwrite=overwrite, keep=(VOCAB_NAME,)) as shards:
        if shards.claim.resumed:
            try:
                manifest, _ = shard_set(out)
                if manifest["generation"] == shards.generation:
                    return manifest
            except ShardSetError:
                pass  # incomplete or damaged: complete it below
        manifest: dict[str, Any] = {"sources": asdict(sources), "rows_per_shard": rows_per_shard,
                                    "row_group_rows": ROW_GROUP_ROWS, "tasks": {}}
        entries: list[dict] = []
        if sources.panoptic_json:
            imgs, vocab = panoptic_sources(sources.panoptic_json, sources.panoptic_images, sources.panoptic_png_dir)
            res = write_task_shards(imgs, shards, "panoptic", "coco_panoptic", vocab, rows_per_shard)
            manifest["tasks"]["panoptic"] = res["counts"]
            entries += res["entries"]
        if sources.detection_json:
            if not sources.pseudo_masks and not sources.box_masks:
                raise ValueError("detection shards need the pseudo-mask output (python -m jobs.pseudo_masks makes "
                                 "it), or box_masks=True to train on filled boxes")
            imgs, vocab, skips = detection_sources(sources.detection_json, sources.detection_images,
                                                   None if sources.box_masks else sources.pseudo_masks,
                                                   box_masks=sources.box_masks)
            res = write_task_shards(imgs, shards, "detection", "objects365", vocab, rows_per_shard)
            manifest["tasks"]["detection"] = {**res["counts"], "skipped": skips}
            entries += res["entries"]
        if sources.captions:
            per_source = caption_sources(sources.captions)
            # one captions task; ids stay unique by offsetting each source into its own id range
            merged: list[SourceImage] = []
            for k, (name, imgs) in enumerate(per_source):
                for im in imgs:
                    im.image_id = k * 10 ** 12 + im.image_id
                merged.extend(imgs)
            res = write_task_shards(merged, shards, "captions", "+".join(n for n, _ in per_source), None,
                                    rows_per_shard)
            manifest["tasks"]["captions"] = {**res["counts"], "per_source": {n: len(i) for n, i in per_source}}
            entries += res["entries"]
        manifest["shards"] = entries
        for name in shards.remove_strays():
            print(f"[train] removed {shards.out.child(name).uri}: not a shard of this set", flush=True)
        return shards.commit(MANIFEST_NAME, manifest)
