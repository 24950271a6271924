"""What an evaluation job reads: the evaluation set's files, images and open vocabulary.

Its readers (:func:`read_panoptic_set`, :func:`read_lvis_set`, :func:`read_coco_instances_set`)
validate the ground-truth files with the project's format readers and return an :class:`EvalSet`:
one :class:`EvalImage` per image to predict, and the vocabulary the model is asked about, taken
from the evaluation set's *own* categories (open vocabulary: ADE20K's 150 names with ``isthing``,
LVIS's names with underscores as spaces, COCO's 133 panoptic names).

Which reader and which layout belong to a task is the table of :mod:`pipelines.evaluate.tasks`,
which also holds the functions that take a task (``resolve_eval_paths``, ``load_eval_set``);
this module knows no task, so it never imports that table. It imports no Ray and no torch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vloss.data.errors import DataFormatError


@dataclass(frozen=True)
class EvalPaths:
    """Ground-truth files of one evaluation.

    Args:
        gt_json: annotation JSON (panoptic, LVIS or COCO instances).
        images: image folder (LVIS: the ``val2017`` folder or the COCO root above it).
        gt_dir: panoptic PNG folder (panoptic tasks only).
    """

    gt_json: Path
    images: Path
    gt_dir: Path | None


@dataclass(frozen=True)
class EvalImage:
    """One image to predict.

    Args:
        index: position in the evaluation order (0-based).
        image_id: the dataset's own id (int for COCO/LVIS, str for the ADE20K conversion).
        path: the image file.
        height, width: size from the annotation file; the decoded image must match.
        pred_name: file name of its predicted panoptic PNG (panoptic tasks).
    """

    index: int
    image_id: int | str
    path: str
    height: int
    width: int
    pred_name: str


@dataclass
class EvalSet:
    """A validated evaluation set and its vocabulary.

    Args:
        task: the task's name (:data:`pipelines.evaluate.tasks.EVAL_TASKS`).
        paths: the files it was read from.
        category_ids: the dataset's own category ids, in file order.
        names: the class names embedded by the text encoder, aligned with ``category_ids``.
        is_thing: thing flags aligned with ``category_ids`` (all True for instance tasks).
        images: the images to predict (after ``limit``).
        num_images_total: images in the annotation file.
        panoptic: predictions are panoptic segmentations (else scored instances).
    """

    task: str
    paths: EvalPaths
    category_ids: list[int]
    names: list[str]
    is_thing: list[bool]
    images: list[EvalImage]
    num_images_total: int
    panoptic: bool = False

    @property
    def names_by_id(self) -> dict[int, str]:
        return dict(zip(self.category_ids, self.names))


def is_synthetic_world(paths: EvalPaths) -> bool:
    """Whether the ground truth belongs to a generated synthetic world (a ``world.json`` above it)."""
    return any((parent / "world.json").is_file() for parent in list(Path(paths.gt_json).resolve().parents)[:4])


def vocabulary_sha256(names: list[str], templates: tuple[str, ...] | list[str]) -> str:
    """Digest of an embedded vocabulary (names and prompt templates), recorded by the predictor."""
    text = json.dumps({"names": list(names), "templates": list(templates)}, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def with_vocabulary_file(eval_set: EvalSet, path: str | Path) -> EvalSet:
    """The evaluation set's categories prompted with the names of a vocabulary file.

    The file's things, in order, name the set's thing categories in their file order, and its
    stuff the stuff categories (the format of :meth:`vloss.inference.predictor.Vocabulary.from_file`: one
    name per line with a ``thing:``/``stuff:`` prefix, or a JSON list). Ids, flags and images stay.

    Args:
        eval_set: from a task's reader.
        path: the vocabulary file.

    Raises:
        ValueError: an unreadable or malformed file, or thing/stuff counts that differ from the
            set's (naming both).
    """
    from vloss.inference.predictor import Vocabulary  # the one parser of vocabulary files (imports torch)

    try:
        vocab = Vocabulary.from_file(path)
    except OSError as exc:
        raise ValueError(f"--vocab-file {path}: cannot be read ({exc})") from exc
    want = (sum(eval_set.is_thing), len(eval_set.is_thing) - sum(eval_set.is_thing))
    got = (sum(vocab.isthing), len(vocab.isthing) - sum(vocab.isthing))
    if got != want:
        raise ValueError(f"--vocab-file {path}: {got[0]} things and {got[1]} stuff names, but {eval_set.paths.gt_json} "
                         f"has {want[0]} thing and {want[1]} stuff categories; give one name per category, "
                         f"things then stuff in the file's category order")
    things = iter(n for n, t in zip(vocab.names, vocab.isthing) if t)
    stuff = iter(n for n, t in zip(vocab.names, vocab.isthing) if not t)
    names = [next(things) if t else next(stuff) for t in eval_set.is_thing]
    return replace(eval_set, names=names)


def _limit(items: list, limit: int | None) -> list:
    if limit is not None and limit <= 0:
        raise ValueError(f"limit must be positive, got {limit}")
    return items[:limit] if limit else items


def read_panoptic_set(task: str, paths: EvalPaths, limit: int | None = None) -> EvalSet:
    """A COCO-panoptic-format set (COCO panoptic val, ADE20K panoptic): 133 / 150 names with ``isthing``."""
    from vloss.data.coco_panoptic import read_coco_panoptic

    ds = read_coco_panoptic(paths.gt_json, paths.images, paths.gt_dir)
    cats = ds.categories
    images = [EvalImage(k, im.id, str(im.image_path), im.height, im.width, im.png_path.name)
              for k, im in enumerate(_limit(ds.images, limit))]
    return EvalSet(task, paths, [c.id for c in cats], [c.name for c in cats],
                   [bool(c.isthing) for c in cats], images, len(ds.images), panoptic=True)


def read_lvis_set(task: str, paths: EvalPaths, limit: int | None = None) -> EvalSet:
    """An LVIS v1 set: names with underscores as spaces, all things."""
    from vloss.data.lvis_format import read_lvis

    ds = read_lvis(paths.gt_json, paths.images)
    images = [EvalImage(k, im.id, str(im.path), im.height, im.width, Path(im.path).stem + ".png")
              for k, im in enumerate(_limit(ds.images, limit))]
    return EvalSet(task, paths, [c.id for c in ds.categories], [c.display_name for c in ds.categories],
                   [True] * len(ds.categories), images, len(ds.images))


def read_coco_instances_set(task: str, paths: EvalPaths, limit: int | None = None) -> EvalSet:
    """A COCO instances set with masks (every annotation needs ``segmentation``)."""
    from vloss.data.coco_detection import read_coco_detection

    ds = read_coco_detection(paths.gt_json, paths.images)
    missing = [a.id for a in ds.annotations() if a.segmentation is None]
    if missing:
        raise DataFormatError(paths.gt_json, "annotation has no 'segmentation'; mask AP needs instance masks",
                              field="segmentation", record=f"annotation id {missing[0]}")
    images = [EvalImage(k, im.id, str(im.path), im.height, im.width, Path(im.file_name).stem + ".png")
              for k, im in enumerate(_limit(ds.images, limit))]
    return EvalSet(task, paths, [c.id for c in ds.categories], [c.name for c in ds.categories],
                   [True] * len(ds.categories), images, len(ds.images))


def write_gt_subset(eval_set: EvalSet, out_path: Path) -> Path:
    """The ground-truth JSON restricted to ``eval_set.images`` (for ``--limit`` runs).

    PQ needs a prediction for every ground-truth image and AP counts every unpredicted
    ground-truth instance as missed, so a trial over N images is scored against those N
    images only. Categories (and every other top-level key) are kept unchanged.

    Args:
        eval_set: the evaluated set.
        out_path: where to write the subset JSON.

    Returns:
        ``eval_set.paths.gt_json`` itself when every image is evaluated, else ``out_path``.
    """
    if len(eval_set.images) == eval_set.num_images_total:
        return eval_set.paths.gt_json
    with open(eval_set.paths.gt_json) as f:
        data: dict[str, Any] = json.load(f)
    keep = {im.image_id for im in eval_set.images}
    data["images"] = [im for im in data["images"] if im["id"] in keep]
    data["annotations"] = [a for a in data.get("annotations", []) if a["image_id"] in keep]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(data, f)
    return out_path
