"""Training data for a run: the synthetic world generated when no data is given, and the training
shards built from a data root or a sources file plus the pseudo-mask output (or filled boxes)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile

from pipelines.common.pseudo_mask_format import MANIFEST_NAME as PSEUDO_MASK_MANIFEST
from pipelines.common.remote import is_remote, publish
from pipelines.common.storage import locate
from vloss.training.tasks import TASKS


def synthetic_world(work_dir: str, seed: int = 0) -> str:
    """The synthetic world under ``work_dir/world``, generated on first use; returns its root.

    ``work_dir`` may be an object-store URI (the run's storage on a cluster): the world is then
    generated in a local temporary folder and uploaded.
    """
    from vloss.data.synthetic import generate_world

    root = locate(work_dir).child("world")
    if root.child("world.json").exists():
        return root.uri
    print(f"[train] no --data given: generating the synthetic world in {root.uri}", flush=True)
    if not is_remote(root.uri):
        generate_world(root.path, seed)
        return root.uri
    local = tempfile.mkdtemp(prefix="vloss-world-")  # generated here, then uploaded (world.json last)
    try:
        generate_world(os.path.join(local, "world"), seed)
        marker = os.path.join(local, "world.json")
        os.replace(os.path.join(local, "world", "world.json"), marker)
        publish(os.path.join(local, "world"), root.uri)
        with open(marker, "rb") as f:
            root.child("world.json").write_bytes_atomic(f.read())
    finally:
        shutil.rmtree(local, ignore_errors=True)
    return root.uri


def prepare_shards(data_root: str | None, work_dir: str, pseudo_masks: str | None = None,
                   rows_per_shard: int = 256, seed: int = 0, box_masks: bool = False,
                   tasks: tuple[str, ...] = TASKS, overwrite: bool = False,
                   extra_image_text: bool = False) -> str:
    """Training shards for ``data_root`` (generated synthetic world when None); returns their root.

    Args:
        data_root: data root in the layouts of ``docs/DATA_LAYOUT.md``, or a sources file naming
            one's own files (``docs/CUSTOM_DATA.md``); None: the synthetic world, generated under
            ``work_dir/world``.
        work_dir: where the world and the shards go.
        pseudo_masks: the pseudo-mask output for the detection boxes.
        rows_per_shard: images per shard.
        seed: seed of a generated world.
        box_masks: train detection on filled boxes instead of pseudo masks (a launch decides it:
            :attr:`pipelines.train.launch.TrainLaunch.box_masks_for_run`).
        tasks: the tasks the run trains (``TrainConfig.tasks_used()``); sources of other tasks are
            not read (a COCO-only recipe needs no pseudo masks).
        overwrite: replace a shard root built for another plan instead of refusing.
        extra_image_text: add the data root's extra image-text source (``image_text/``) to the captions.
    """
    from pipelines.train.sources import TrainingSources

    if data_root is None:
        data_root = synthetic_world(work_dir, seed)
    shard_root = os.path.join(work_dir, "shards")
    sources = TrainingSources.from_data(data_root, extra_image_text=extra_image_text)
    if "captions" not in tasks:
        sources.captions = []
    if "detection" not in tasks:
        sources.detection_json = sources.detection_images = None
        return _build(sources, shard_root, rows_per_shard, overwrite)
    if pseudo_masks is None:
        pseudo_masks = os.path.join(work_dir, "pseudo_masks")
    has_pseudo = locate(pseudo_masks).child(PSEUDO_MASK_MANIFEST).exists()
    if not box_masks and not has_pseudo:
        raise FileNotFoundError(missing_pseudo_masks(pseudo_masks, sources.detection_json, sources.detection_images))
    if box_masks:
        print("[train] detection masks: the filled boxes (weakly-supervised baseline, no pseudo masks)", flush=True)
    else:
        sources.pseudo_masks = pseudo_masks
    sources.box_masks = box_masks
    return _build(sources, shard_root, rows_per_shard, overwrite)


def missing_pseudo_masks(where: str, annotations: str, images: str) -> str:
    """What a run that needs pseudo masks says when ``where`` holds none: the command that makes them."""
    return (f"no pseudo-mask output at {where} (no {PSEUDO_MASK_MANIFEST}); make it with python -m jobs.pseudo_masks "
            f"--annotations {annotations} --images {images} --checkpoint TEACHER.pth --out {where} and pass "
            f"--pseudo-masks {where}, or train detection on filled boxes (the weak baseline of Sec. 3.2) with "
            f"--box-masks")


def _build(sources, shard_root: str, rows_per_shard: int, overwrite: bool) -> str:
    from pipelines.train.sources import build_training_shards

    manifest = build_training_shards(sources, shard_root, rows_per_shard=rows_per_shard, overwrite=overwrite)
    print("[train] training shards:", json.dumps({t: v["images"] for t, v in manifest["tasks"].items()}),
          flush=True)
    return shard_root
