"""The pseudo-mask job: COCO boxes -> one mask per box -> Parquet shards, with Ray Data.

Flow (all validation happens before Ray starts):

1. Read and validate the detection JSON (``vloss.teacher.boxes``): unknown ids,
   non-positive boxes and boxes entirely outside their image are errors; boxes
   partly outside are clipped and counted.
2. Plan shards: images with boxes, sorted by id, ``rows_per_shard`` per shard, named
   ``part-{index:05d}.parquet``. The same input always maps an image to the same shard.
3. Validate existing shards; only images of missing/invalid shards go to Ray.
4. Ray Data pipeline: ``from_items`` (image records) -> ``map_batches(decode_images)``
   (Ray tasks read bytes through ``pyarrow.fs`` and decode with PIL) ->
   ``map_batches(PseudoMaskStage, compute=ActorPoolStrategy(size=n))`` (the teacher,
   loaded once per actor) -> ``iter_batches`` on the driver.
5. The driver streams results into per-shard buffers and commits a shard (temp file,
   then rename) the moment all of its images are in. ``preserve_order`` is on, so
   shards complete in order and the driver holds about one shard of RLE rows at a
   time. This keeps names deterministic and commits atomic, which
   ``Dataset.write_parquet`` (names by write task, not by image id) cannot give.
6. ``_manifest.json`` and ``_errors.jsonl`` are rebuilt from all shards' footers, so
   counts describe the final output, kept shards included.

Images that fail to read or decode, or whose size disagrees with the JSON, are
recorded (reason) in their shard's footer and ``_errors.jsonl`` and counted; with
``strict=True`` the first such failure aborts the job.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Callable

from pipelines.common.actor_pool import run_actor_pool
from pipelines.common.cli import write_resolved_config
from pipelines.common.errors import JobError
from pipelines.common.pseudo_mask_format import (
    CONFIG_NAME,
    ERRORS_NAME,
    FORMAT_VERSION,
    MANIFEST_NAME,
    pseudo_mask_shards,
)
from pipelines.common.shard_writer import ShardSetWriter
from pipelines.common.storage import locate, read_json
from pipelines.pseudo_masks.config import PseudoMaskJobConfig
from pipelines.pseudo_masks.decode import decode_images
from pipelines.pseudo_masks.shards import ShardResult, ShardSpec, check_shard, plan_shards, shard_bytes
from pipelines.pseudo_masks.stage import PseudoMaskStage
from vloss.progress import ProgressLine
from vloss.teacher.boxes import DetectionInput, ImageBoxes, parse_detection_input
from vloss.teacher.config import build_teacher
from vloss.teacher.mmdet_predictor import config_identity, require_mmdet

if TYPE_CHECKING:
    import ray


class PseudoMaskJobError(JobError):
    """The job cannot finish (strict-mode failure, or an inconsistent run)."""


# ----------------------------------------------------------------------------- driver

def _image_items(specs: list[ShardSpec]) -> list[dict]:
    items = []
    for spec in specs:
        for im in spec.images:
            boxes = {"id": [b.ann_id for b in im.instances], "category_id": [b.category_id for b in im.instances],
                     "bbox": [list(b.bbox) for b in im.instances], "clipped": [b.clipped for b in im.instances]}
            items.append({"image_id": im.image_id, "shard": spec.index, "file_name": im.file_name,
                          "height": im.height, "width": im.width, "boxes_json": json.dumps(boxes)})
    return items


def _row_from_result(row: dict) -> dict:
    insts = json.loads(row["instances_json"])
    return {"image_id": int(row["image_id"]), "file_name": str(row["file_name"]),
            "height": int(row["height"]), "width": int(row["width"]),
            "instances": [{"id": i["id"], "category_id": i["category_id"], "bbox": i["bbox"],
                           "segmentation": i["counts"].encode("ascii"), "area": i["area"],
                           "score": i["score"], "clipped": i["clipped"], "teacher_label": i["teacher_label"]}
                          for i in insts]}


def _run_ray(config: PseudoMaskJobConfig, specs: list[ShardSpec], shards: ShardSetWriter,
             on_commit: Callable[[str, int], None] | None = None) -> dict[int, dict]:
    """Process the images of ``specs`` and write each shard the moment its images are in.

    Returns:
        shard index -> its footer metadata.
    """
    pending = {s.index: ShardResult(s) for s in specs}
    footers: dict[int, dict] = {}
    items = _image_items(specs)
    line = ProgressLine("pseudo-masks", len(items), unit="img")
    batches = run_actor_pool(
        items, decode=decode_images, decode_kwargs={"images_root": config.images}, stage=PseudoMaskStage,
        stage_kwargs={"teacher": asdict(config.teacher), "checkpoint": config.checkpoint,
                      "gpus": config.pool.gpus_per_actor},
        pool=config.pool, batch_size=config.batch_size, job="the pseudo-mask job", actors="teacher",
        paths={"--images": config.images, "--checkpoint": config.checkpoint}, preserve_order=True, max_blocks=200)
    for batch in batches:
        line.update(len(batch["image_id"]), postfix=f"{len(footers)}/{len(specs)} shards")
        for k in range(len(batch["image_id"])):
            row = {name: col[k] for name, col in batch.items()}
            shard = pending[int(row["shard"])]
            if row["error"]:
                if config.strict:
                    raise PseudoMaskJobError(f"image id {int(row['image_id'])} failed (--strict): {row['error']}")
                shard.failed.append({"image_id": int(row["image_id"]), "file_name": str(row["file_name"]),
                                     "reason": str(row["error"])})
            else:
                shard.rows.append(_row_from_result(row))
            if shard.done == len(shard.spec.images):
                shards.write(shard.spec.name, shard_bytes(shard), len(shard.rows))
                footers[shard.spec.index] = shard.metadata()
                if on_commit is not None:
                    on_commit(shard.spec.name, len(shard.spec.images))
                del pending[shard.spec.index]
    line.close(postfix=f"{len(footers)}/{len(specs)} shards")
    if pending:
        raise PseudoMaskJobError(f"shards {sorted(pending)} did not receive all their images")
    return footers


def sample_images(images: list[ImageBoxes], n: int | None, seed: int) -> list[ImageBoxes]:
    """A seeded random subset of ``n`` images, kept in image-id order (all of them when ``n`` is None).

    The draw uses ``random.Random(seed).sample`` over the id-sorted list, which Python reproduces
    for an int seed across processes and versions, so the same input and seed give the same images.

    Raises:
        ValueError: ``n`` exceeds the images available.
    """
    if n is None:
        return images
    if n > len(images):
        raise ValueError(f"sample={n} but only {len(images)} images have boxes")
    chosen = sorted(random.Random(seed).sample(range(len(images)), n))
    return [images[i] for i in chosen]


def load_detection_input(annotations: str) -> DetectionInput:
    """Read (local or URI) and validate a detection JSON; raises ``DataFormatError``."""
    loc = locate(annotations)
    return parse_detection_input(read_json(loc), loc.uri)


def plan_fingerprint(config: PseudoMaskJobConfig, annotations_sha256: str, checkpoint_sha256: str | None) -> dict:
    """Everything that determines this job's output (the output directory belongs to one such plan)."""
    teacher = asdict(config.teacher) if config.teacher.needs_checkpoint else {"backend": config.teacher.backend}
    if config.teacher.backend == "mmdet":  # the config's content (a user file moved stays the same plan)
        teacher.update(mmdet_config=config_identity(config.teacher.mmdet_config or ""), arch=None)
    else:  # mmdet's keys do not enter the other backends' fingerprints (their outputs stay valid)
        teacher.pop("mmdet_config", None)
        teacher.pop("trust_config", None)
    # the image root is where the images are, not what they are: moving them (or fixing a wrong
    # --images after every image failed) continues the same plan; failed images are retried anyway
    return {"format": FORMAT_VERSION, "annotations_sha256": annotations_sha256, "teacher": teacher,
            "checkpoint_sha256": checkpoint_sha256, "rows_per_shard": config.rows_per_shard,
            "sample": config.sample, "sample_seed": config.sample_seed if config.sample else None,
            "limit": config.limit}


def run_pseudo_masks(config: PseudoMaskJobConfig,
                     on_commit: Callable[[str, int], None] | None = None) -> dict[str, Any]:
    """Run (or resume) the job; returns the manifest that was written.

    The output directory is claimed for this plan first (:mod:`pipelines.common.output_set`): the
    same command completes what is missing, another plan is refused unless ``config.overwrite``.
    Shards with failed images are retried on every run; when every image fails the job raises
    after writing the manifest and ``_errors.jsonl``.

    Args:
        config: the run's settings.
        on_commit: called with (shard name, images in it) after each shard is committed.

    Raises:
        OutputConflictError: the output holds another plan's shards.
        PseudoMaskJobError: every image failed (or the first failure with ``strict``).
    """
    t0 = time.time()
    ann_loc = locate(config.annotations)
    det = load_detection_input(config.annotations)
    if not any(im.instances for im in det.images):
        raise ValueError(f"{config.annotations}: no image has a box ({len(det.images)} images, 0 boxes): "
                         f"there is nothing to turn into pseudo masks")
    images = sample_images(det.images, config.sample, config.sample_seed)
    sampled_ids = [im.image_id for im in images] if config.sample else None
    images = images[:config.limit] if config.limit else images
    ckpt_sha = None
    if config.teacher.backend == "mmdet":
        require_mmdet()  # one line naming `make install-mmdet`, before anything is read
    if config.teacher.needs_checkpoint:
        ckpt_loc = locate(config.checkpoint)
        if not ckpt_loc.is_file():
            raise FileNotFoundError(f"{config.checkpoint}: checkpoint file not found")
        ckpt_sha = ckpt_loc.sha256()
        # in the driver, before any Ray work: a file that is no checkpoint, or one of another
        # architecture, fails here in one line naming the file (not in every actor's log)
        build_teacher(config.teacher, ckpt_loc.read_bytes(), checkpoint_name=config.checkpoint)
    run_key = {"backend": config.teacher.backend, "checkpoint_sha256": ckpt_sha,
               "arch": config.teacher.arch if config.teacher.needs_checkpoint else None,
               "min_size": config.teacher.min_size, "max_size": config.teacher.max_size,
               "mask_threshold": config.teacher.mask_threshold}
    if config.teacher.backend == "mmdet":
        run_key.update(arch=None, mmdet_config=config_identity(config.teacher.mmdet_config or ""))
    specs = plan_shards(images, config.rows_per_shard, run_key)

    out = locate(config.out)
    ann_sha = ann_loc.sha256()
    with ShardSetWriter(out, plan_fingerprint(config, ann_sha, ckpt_sha), what="pseudo masks",
                        overwrite=config.overwrite) as shards:
        write_resolved_config(out, {"job": config}, name=CONFIG_NAME)
        footers: dict[int, dict] = {}
        todo: list[ShardSpec] = []
        for spec in specs:
            meta = shards.kept(spec.name, lambda loc, spec=spec: check_shard(loc, spec))
            if meta is not None:
                footers[spec.index] = meta
            else:
                todo.append(spec)
        if todo:
            footers.update(_run_ray(config, todo, shards, on_commit))
        stale = shards.remove_strays()  # files the manifest will not list would make the set unreadable
        return _finish(config, det, images, sampled_ids, specs, todo, footers, shards, stale, ann_sha, ckpt_sha, t0)


def _finish(config: PseudoMaskJobConfig, det: DetectionInput, images: list[ImageBoxes], sampled_ids: list[int] | None,
            specs: list[ShardSpec], todo: list[ShardSpec], footers: dict[int, dict], shards: ShardSetWriter,
            stale: list[str], ann_sha: str, ckpt_sha: str | None, t0: float) -> dict[str, Any]:
    """The manifest and ``_errors.jsonl`` of a run whose shards are all written; commits the set."""
    failed = [f for i in sorted(footers) for f in footers[i]["failed"]]
    manifest = {
        "inputs": {"annotations": config.annotations, "annotations_sha256": ann_sha,
                   "images": config.images, "checkpoint": config.checkpoint, "checkpoint_sha256": ckpt_sha,
                   "limit": config.limit, "rows_per_shard": config.rows_per_shard, "strict": config.strict},
        "sample": None if sampled_ids is None else {
            "images": len(sampled_ids), "seed": config.sample_seed, "of": len(det.images),
            "image_ids_sha256": hashlib.sha256(json.dumps(sampled_ids).encode()).hexdigest()},
        "teacher": asdict(config.teacher),
        "backend": config.teacher.backend,
        "counts": {
            "images_in_json": det.num_images_total,
            "images_without_boxes": det.num_images_without_boxes,
            "images_with_boxes": len(det.images),
            "images": len(images),
            "boxes": sum(len(im.instances) for im in images),
            "clipped_boxes": sum(int(b.clipped) for im in images for b in im.instances),
            "clipped_boxes_in_json": det.num_clipped,
            "images_written": sum(f["num_rows"] for f in footers.values()),
            "masks_written": sum(f["num_masks"] for f in footers.values()),
            "empty_masks": sum(f.get("num_empty_masks", 0) for f in footers.values()),
            "failed_images": len(failed),
            "skipped_boxes": sum(f["num_boxes"] for f in footers.values())
            - sum(f["num_masks"] for f in footers.values()),
            "shards": len(specs),
            "shards_written": len(todo),
            "shards_kept": len(specs) - len(todo),
            "stale_shards_removed": len(stale),
        },
        "recomputed_shards": dict(shards.rebuilt),
        "shards": [{**shards.entries[spec.name], "masks": footers[spec.index]["num_masks"],
                    "failed": len(footers[spec.index]["failed"])} for spec in specs],
        "errors": failed,
        "categories": det.categories,
        "seconds": round(time.time() - t0, 3),
    }
    out = shards.out
    out.child(ERRORS_NAME).write_bytes_atomic("".join(json.dumps(f) + "\n" for f in failed).encode())
    manifest = shards.commit(MANIFEST_NAME, manifest)
    if images and len(failed) == len(images):
        raise PseudoMaskJobError(f"every one of the {len(images)} images failed (first: image "
                                 f"{failed[0]['image_id']}: {failed[0]['reason']}); see {out.child(ERRORS_NAME).uri}")
    return manifest


def manifest_summary(manifest: dict) -> str:
    """A few human-readable lines about a finished run."""
    c = manifest["counts"]
    lines = [f"backend={manifest['backend']}  images={c['images']}  boxes={c['boxes']}  "
             f"clipped={c['clipped_boxes']}  masks={c['masks_written']} (empty: {c['empty_masks']})  "
             f"failed_images={c['failed_images']}",
             f"shards={c['shards']} (written {c['shards_written']}, kept {c['shards_kept']})  "
             f"seconds={manifest['seconds']}"]
    lines += [f"  error: image {e['image_id']} ({e['file_name']}): {e['reason']}" for e in manifest["errors"][:10]]
    return "\n".join(lines)


def pseudo_mask_dataset(out: str) -> ray.data.Dataset:
    """The shards of a finished output as a Ray Dataset (one row per image, ``SCHEMA`` columns).

    Masks stay COCO RLE (``instances[*].segmentation`` counts, size ``[height, width]``);
    decode them in the consumer with ``pipelines.common.pseudo_mask_format.record_to_target``.

    Args:
        out: the job's output directory (path or URI).
    """
    import ray

    locs = pseudo_mask_shards(out)
    if not locs:
        raise FileNotFoundError(f"{out}: no part-*.parquet shards")
    return ray.data.read_parquet([loc.path for loc in locs], filesystem=locs[0].fs)
