"""The evaluation tasks, one table: name, data layout, reader, scorer, top-k.

Adding a task is one :class:`EvalTask` entry plus its reader (ground truth -> :class:`EvalSet`)
and scorer (files -> metrics). The name is the task's only spelling: on the command line
(``--task``), in ``metrics.json``, in the report (:data:`vloss.eval.report.TASKS` uses the same
keys) and in the data layout (the folder of the synthetic world and of ``docs/EVALUATION.md``).

:func:`resolve_eval_paths` finds the ground-truth files of a task under a data root (the layouts
of ``docs/DATA_LAYOUT.md`` and ``docs/EVALUATION.md``: the synthetic world, a root holding
``ade20k_panoptic/`` or ``lvis/``, or the dataset folder itself such as ``ADEChallengeData2016/``);
explicit ``--gt-json / --images / --gt-dir`` paths win. :func:`load_eval_set` reads them with the
task's reader (:mod:`pipelines.evaluate.data`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pipelines.evaluate.data import EvalPaths, EvalSet, read_coco_instances_set, read_lvis_set, read_panoptic_set


@dataclass(frozen=True)
class Layout:
    """Where a task's files lie under a data root.

    Args:
        folders: folders under the data root to try, in order (``.`` is the root itself).
        gt_json: annotation file, relative to the folder found.
        images: image folder, relative to the folder found.
        gt_dir: panoptic PNG folder, relative to the folder found (None for instance tasks).
        images_beside: a folder beside the found one that holds the images when the found one
            has no ``val2017`` (LVIS next to COCO, detectron2's ``datasets/`` layout).
        world_key: the task's key in a synthetic world's ``world.json`` paths (None: not generated).
    """

    folders: tuple[str, ...]
    gt_json: str
    images: str
    gt_dir: str | None = None
    images_beside: str | None = None
    world_key: str | None = None


def _score_pq(gt_json: Path, paths: EvalPaths, pred_json: Path, pred_dir: Path, workers: int | None,
              max_dets: int | None, crowd_rule: str = "official") -> dict:
    from vloss.eval.pq import pq_compute

    return pq_compute(gt_json, paths.gt_dir, pred_json, pred_dir, workers=workers, crowd_rule=crowd_rule)


def _score_lvis(gt_json: Path, paths: EvalPaths, pred_json: Path, pred_dir: Path, workers: int | None,
                max_dets: int | None, crowd_rule: str = "official") -> dict:
    from vloss.eval.lvis_eval import lvis_mask_ap

    return lvis_mask_ap(gt_json, pred_json, max_dets=max_dets)


def _score_coco(gt_json: Path, paths: EvalPaths, pred_json: Path, pred_dir: Path, workers: int | None,
                max_dets: int | None, crowd_rule: str = "official") -> dict:
    from vloss.eval.coco_eval import coco_mask_ap

    return coco_mask_ap(gt_json, pred_json, max_dets=max_dets)


Reader = Callable[[str, EvalPaths, "int | None"], EvalSet]
Scorer = Callable[[Path, EvalPaths, Path, Path, "int | None", "int | None", str], dict]


@dataclass(frozen=True)
class EvalTask:
    """One evaluation task.

    Args:
        name: the task's one spelling.
        panoptic: predictions are COCO panoptic PNG + JSON (else a results JSON of RLE masks).
        layout: where its files lie under a data root.
        reader: ``reader(name, paths, limit) -> EvalSet`` (validates the ground truth, builds the
            open vocabulary from the set's own categories).
        scorer: ``scorer(gt_json, paths, pred_json, pred_dir, workers, max_dets, crowd_rule) -> metrics``
            (``crowd_rule``: PQ only).
        topk: detections kept per image and scored (instance tasks; the protocol's own number).
    """

    name: str
    panoptic: bool
    layout: Layout
    reader: Reader
    scorer: Scorer
    topk: int | None = None


_LVIS_FOLDERS = ("lvis", ".")
# LVIS v1 val images come from COCO train2017 *and* val2017 (see coco_url): the image folder is
# the one holding those split folders
EVAL_TASKS: dict[str, EvalTask] = {t.name: t for t in (
    EvalTask("ade20k_panoptic", True,
             Layout(("ade20k_panoptic", "ADEChallengeData2016", "."), "ade20k_panoptic_val.json",
                    "images/validation", "ade20k_panoptic_val", world_key="ade20k_panoptic"),
             read_panoptic_set, _score_pq),
    EvalTask("coco_panoptic", True,
             Layout(("coco_panoptic", "coco", "."), "annotations/panoptic_val2017.json", "val2017",
                    "annotations/panoptic_val2017", world_key="coco_panoptic"),
             read_panoptic_set, _score_pq),
    EvalTask("lvis", False,
             Layout(_LVIS_FOLDERS, "lvis_v1_val.json", ".", images_beside="coco", world_key="lvis"),
             read_lvis_set, _score_lvis, topk=300),
    EvalTask("lvis_minival", False,
             Layout(_LVIS_FOLDERS, "lvis_v1_minival.json", ".", images_beside="coco"),
             read_lvis_set, _score_lvis, topk=300),
    EvalTask("coco_instances", False,
             Layout(("coco", "."), "annotations/instances_val2017.json", "val2017"),
             read_coco_instances_set, _score_coco, topk=100),
)}
TASK_NAMES = tuple(EVAL_TASKS)


def get_task(name: str) -> EvalTask:
    """The task called ``name``; ``ValueError`` listing the known ones otherwise."""
    if name not in EVAL_TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {TASK_NAMES}")
    return EVAL_TASKS[name]


def _task(task: str | EvalTask) -> EvalTask:
    return get_task(task) if isinstance(task, str) else task


def resolve_eval_paths(task: str | EvalTask, data: str | Path | None = None, gt_json: str | Path | None = None,
                       images: str | Path | None = None, gt_dir: str | Path | None = None) -> EvalPaths:
    """Locate a task's files: explicit paths first, then the task's layout under ``data``.

    Args:
        task: a task name or :class:`EvalTask`.
        data: data root (synthetic world, a root with the dataset folders, or the dataset folder).
        gt_json, images, gt_dir: explicit paths overriding the layout.

    Raises:
        ValueError: unknown task, or a file that is neither given nor found under ``data``.
    """
    task = _task(task)
    lay = task.layout
    found: dict[str, Path | None] = {"gt_json": None, "images": None, "gt_dir": None}
    if data is not None:
        root = Path(data).resolve()
        if not root.is_dir():
            raise ValueError(f"--data {root}: not a directory")
        if (root / "world.json").is_file() and lay.world_key is not None:
            from vloss.data.synthetic import load_world

            p = load_world(root)["paths"][lay.world_key]
            found = {"gt_json": p["val_json"], "images": p["val_images"], "gt_dir": p.get("val_png_dir")}
        else:
            base = next((root / f for f in lay.folders if (root / f / lay.gt_json).is_file()), None)
            if base is None:
                tried = ", ".join(str(root / f / lay.gt_json) for f in lay.folders)
                raise ValueError(f"--data {root}: no {task.name} annotation file found (tried {tried}); "
                                 f"see docs/EVALUATION.md or pass --gt-json")
            found = {"gt_json": base / lay.gt_json, "images": base / lay.images,
                     "gt_dir": base / lay.gt_dir if lay.gt_dir else None}
            beside = root / lay.images_beside if lay.images_beside else None
            if beside is not None and not (base / "val2017").is_dir() and (beside / "val2017").is_dir():
                found["images"] = beside
    explicit = {"gt_json": gt_json, "images": images, "gt_dir": gt_dir}
    for key, value in explicit.items():
        if value is not None:
            found[key] = Path(value).resolve()
    if found["gt_json"] is None or found["images"] is None:
        raise ValueError(f"{task.name}: pass --data ROOT, or --gt-json and --images")
    if task.panoptic and found["gt_dir"] is None:
        raise ValueError(f"{task.name}: pass --gt-dir (the ground-truth panoptic PNG folder)")
    if not Path(found["gt_json"]).is_file():
        raise ValueError(f"{task.name}: annotation file not found: {found['gt_json']}")
    return EvalPaths(Path(found["gt_json"]), Path(found["images"]),
                     Path(found["gt_dir"]) if task.panoptic else None)


def load_eval_set(task: str | EvalTask, paths: EvalPaths, limit: int | None = None) -> EvalSet:
    """Read and validate the ground truth with the task's reader; build the images and the vocabulary.

    Args:
        task: a task name or :class:`EvalTask`.
        paths: from :func:`resolve_eval_paths`.
        limit: evaluate only the first ``limit`` images (file order).

    Raises:
        DataFormatError: naming file, record and field, for malformed annotation files.
    """
    task = _task(task)
    return task.reader(task.name, paths, limit)
