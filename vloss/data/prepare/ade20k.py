"""ADE20K-150 panoptic from the official downloads, converted the way Mask2Former converts it.

Input (``--src``: the folder holding ``ADEChallengeData2016/``, or that folder itself)::

    ADEChallengeData2016/images/{training,validation}/*.jpg
    ADEChallengeData2016/annotations/{training,validation}/*.png           150-class semantic maps
        (one channel, uint8: 0 = unlabeled, c = class c of objectInfo150, 1..150)
    ADEChallengeData2016/annotations_instance/{training,validation}/*.png  the instance release
        (annotations_instance.tar of the SceneParsing challenge, used by Mask2Former; RGB uint8:
        R = instance class 1..100, G = instance id within the image, 0 = no instance)
    categoryMapping.txt   optional, beside or inside those folders: the instance release's
        Instance100 -> SceneParse150 table; checked against the built-in copy when present

Output (``--out DATA_ROOT``)::

    ade20k_panoptic/images/{validation,training}      the download's image folder: a folder
        symlink (``--link symlink``, the default) or real folders of hard links / copies
    ade20k_panoptic/ade20k_panoptic_{val,train}.json  COCO panoptic JSON
    ade20k_panoptic/ade20k_panoptic_{val,train}/*.png COCO panoptic PNGs (id = R + 256 G + 256^2 B)
    ade20k_panoptic/ade20k_150_categories.json        the 150 categories (id, name, isthing, color)

The conversion (Mask2Former's ``datasets/prepare_ade20k_pan_seg.py``; the category table is
:mod:`vloss.data.prepare.ade20k_categories`):

* Categories: the 150 classes with id = semantic value - 1 (0..149); a class is a thing when an
  instance class maps to it (100 things, 50 stuff).
* Images: every ``*.jpg`` of the split in name order; image id = the file stem (a string),
  width and height from the JPEG; the semantic and instance PNGs have the stem's name.
* Stuff: every stuff class present in the semantic map is one segment made of all its pixels.
* Things: every non-zero G value is one segment made of all its pixels, of the class its R value
  maps to (an instance whose pixels carry two R values is an error). Thing classes of the
  semantic map are not used: their pixels stay void unless an instance covers them.
* Overlaps: stuff is painted first and instances over it, so an instance wins over the semantic
  map wherever they disagree (also over unlabeled semantic pixels).
* Void (id 0): unlabeled semantic pixels and thing-class pixels without an instance.
* Each segment: ``area`` = its pixel count, ``bbox`` = its tight integer ``[x, y, w, h]``,
  ``iscrowd`` = 0; stuff segments first (class order), then instances (instance id order).
* Segment ids are colours as panopticapi's ``IdGenerator`` gives them: a stuff segment the
  class's palette colour, an instance its class colour while unused in the image, else the first
  unused colour near it (see :func:`free_colour`).

Where this output differs from Mask2Former's, on purpose (every case is counted in the summary):

* ``area`` and ``bbox`` are measured on the final PNG. Mask2Former measures a stuff segment
  before instances are painted over it, and keeps a stuff segment that instances cover entirely
  (listed in the JSON, absent from the PNG, which the project's reader rejects): such a segment is
  dropped here.
* ``road, route`` and ``skyscraper`` share a palette colour; where both occur, the second gets a
  nearby unused colour instead of the same id (two segments with one id).
* The near colour of a repeated instance is found by a fixed scan instead of a random draw, so
  that re-runs write identical files.

Expected for the official release: val 2000 images, train 20210 images; 150 categories, 100
things and 50 stuff.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, TextIO

import numpy as np
from PIL import Image

from vloss.data.errors import DataFormatError
from vloss.data.masks import id2rgb
from vloss.data.prepare.ade20k_categories import ADE20K_150, INSTANCE_TO_SEMANTIC, NUM_STUFF, NUM_THINGS
from vloss.data.prepare.common import (
    MARKER_DIR,
    Journal,
    Marker,
    PrepareError,
    Skips,
    Summary,
    atomic_write_bytes,
    atomic_write_json,
    list_files,
    place_folder,
    remove_temps,
    write_json_if_changed,
)
from vloss.progress import ProgressLine

CONVERTER = "vloss.data.prepare.ade20k/1"
SPLITS = {"val": "validation", "train": "training"}    # our split name -> the release's folder name
EXPECTED_IMAGES = {"val": 2000, "train": 20210}
OUT_FOLDER = "ade20k_panoptic"
CATEGORIES_FILE = "ade20k_150_categories.json"
MAPPING_FILE = "categoryMapping.txt"
MAX_JITTER = 30   # panopticapi's IdGenerator draws a repeated instance's colour within +-30 per channel

IS_THING = np.array([bool(t) for _, t, _, _ in ADE20K_150])                   # [150]
COLOURS: tuple[tuple[int, int, int], ...] = tuple(c for _, _, c, _ in ADE20K_150)
STUFF_COLOURS = frozenset(c for _, t, c, _ in ADE20K_150 if not t)
# instance class (R value) -> 0-based category id; 0 and unknown classes map to -1
_INSTANCE_LUT = np.full(256, -1, dtype=np.int64)
for _ins, _sem in INSTANCE_TO_SEMANTIC.items():
    _INSTANCE_LUT[_ins] = _sem - 1


def categories_json() -> list[dict[str, Any]]:
    """The ``categories`` list of the panoptic JSON (Mask2Former's ADE20K-150 list)."""
    return [{"id": cid, "name": name, "isthing": thing, "color": list(colour)}
            for cid, thing, colour, name in ADE20K_150]


# ----------------------------------------------------------------------------- one image

@lru_cache(maxsize=None)
def _shell(r: int) -> tuple[tuple[int, int, int], ...]:
    """Offsets ``(dr, dg, db)`` with ``max(|d|) == r``, in lexicographic order."""
    rng = range(-r, r + 1)
    return tuple((a, b, c) for a in rng for b in rng for c in rng if max(abs(a), abs(b), abs(c)) == r)


def free_colour(base: tuple[int, int, int], taken: set[tuple[int, int, int]]) -> tuple[int, int, int]:
    """``base`` if unused, else the first unused colour near it.

    Candidates are ``base + d`` clipped to 0..255, for offsets ``d`` of growing radius
    ``max(|d|) = 1, 2, ..., 30`` and, within a radius, in lexicographic order of ``(dr, dg, db)``
    (so the first candidate is ``base - (1, 1, 1)``). panopticapi draws the offset at random within
    the same +-30 box; a fixed order keeps the output reproducible.

    Args:
        base: the category colour.
        taken: colours in use (black, every stuff colour, colours of this image's segments).

    Raises:
        ValueError: every colour of the box is taken (more than 226980 segments of one class).
    """
    if base not in taken:
        return base
    for r in range(1, MAX_JITTER + 1):
        for d in _shell(r):
            c = (min(255, max(0, base[0] + d[0])), min(255, max(0, base[1] + d[1])),
                 min(255, max(0, base[2] + d[2])))
            if c not in taken:
                return c
    raise ValueError(f"no free colour within +-{MAX_JITTER} of {base}")


def _colour_id(c: tuple[int, int, int]) -> int:
    return c[0] + 256 * c[1] + 256 * 256 * c[2]


def convert_image(semantic: np.ndarray, instance: np.ndarray, where: str = "image"
                  ) -> tuple[np.ndarray, list[dict[str, Any]], dict[str, int]]:
    """Turn one image's semantic and instance maps into a panoptic segmentation.

    Args:
        semantic: [H, W] uint8 150-class map (0 = unlabeled, c = class c, 1..150).
        instance: [H, W, C >= 2] uint8 instance map (channel 0 = instance class 1..100,
            channel 1 = instance id, 0 = none).
        where: names the image in error messages.

    Returns:
        ``(ids, segments_info, stats)``: [H, W] int64 segment ids (0 = void); the JSON's
        ``segments_info`` entries; pixel and segment counts (``stuff_segments``,
        ``thing_segments``, ``stuff_pixels_under_instances``, ``stuff_segments_covered``,
        ``thing_pixels_without_instance``, ``instance_pixels_on_unlabeled``, ``void_pixels``).

    Raises:
        DataFormatError: a semantic value above 150, an instance with no or an unknown instance
            class, or one instance with several classes.
    """
    if semantic.ndim != 2 or instance.ndim != 3 or instance.shape[2] < 2 or instance.shape[:2] != semantic.shape:
        raise DataFormatError(where, f"semantic map {semantic.shape} and instance map {instance.shape} do not "
                                     f"match ([H, W] and [H, W, 3])")
    if int(semantic.max(initial=0)) > len(ADE20K_150):
        raise DataFormatError(where, f"semantic value {int(semantic.max())} is not a class of ADE20K-150 (1..150)",
                              field="semantic")
    cat = semantic.astype(np.int64) - 1                     # [H, W] 0-based class, -1 = unlabeled
    ins_class = instance[..., 0]
    ins_id = instance[..., 1]
    ids = np.zeros(semantic.shape, dtype=np.int64)
    taken: set[tuple[int, int, int]] = {(0, 0, 0)} | set(STUFF_COLOURS)
    used: set[tuple[int, int, int]] = set()
    order: list[tuple[int, int]] = []                       # (segment id, category id)

    for c in np.unique(cat).tolist():
        if c < 0 or IS_THING[c]:
            continue
        colour = COLOURS[c] if COLOURS[c] not in used else free_colour(COLOURS[c], taken | used)
        used.add(colour)
        sid = _colour_id(colour)
        ids[cat == c] = sid
        order.append((sid, c))
    stuff_ids = {sid for sid, _ in order}

    under = on_unlabeled = 0
    for g in np.unique(ins_id).tolist():
        if g == 0:
            continue
        mask = ins_id == g
        classes = np.unique(ins_class[mask]).tolist()
        if len(classes) != 1:
            raise DataFormatError(where, f"instance {g} has pixels of instance classes {classes}; one expected",
                                  field="instance")
        c = int(_INSTANCE_LUT[classes[0]])
        if c < 0:
            raise DataFormatError(where, f"instance {g} has instance class {classes[0]}, not one of 1..100 of "
                                         f"{MAPPING_FILE}", field="instance")
        colour = free_colour(COLOURS[c], taken | used)
        used.add(colour)
        sid = _colour_id(colour)
        under += int(np.count_nonzero(ids[mask] != 0))
        on_unlabeled += int(np.count_nonzero(cat[mask] < 0))
        ids[mask] = sid
        order.append((sid, c))

    segments: list[dict[str, Any]] = []
    covered = 0
    for sid, c in order:
        mask = ids == sid
        area = int(np.count_nonzero(mask))
        if area == 0:          # a stuff segment that instances covered entirely
            covered += 1
            continue
        cols = np.flatnonzero(mask.any(axis=0))
        rows = np.flatnonzero(mask.any(axis=1))
        bbox = [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]
        segments.append({"id": sid, "category_id": c, "area": area, "bbox": bbox, "iscrowd": 0})
    n_stuff = sum(1 for s in segments if s["id"] in stuff_ids)
    stats = {
        "stuff_segments": n_stuff,
        "thing_segments": len(segments) - n_stuff,
        "stuff_pixels_under_instances": under,
        "stuff_segments_covered": covered,
        "thing_pixels_without_instance": int(np.count_nonzero((cat >= 0) & IS_THING[np.maximum(cat, 0)]
                                                              & (ins_id == 0))),
        "instance_pixels_on_unlabeled": on_unlabeled,
        "void_pixels": int(np.count_nonzero(ids == 0)),
    }
    return ids, segments, stats


def _read_png(path: Path, what: str) -> np.ndarray:
    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
    except (OSError, Image.DecompressionBombError) as e:
        raise DataFormatError(path, f"cannot be read as a PNG: {e}") from e
    if arr.dtype != np.uint8:
        raise DataFormatError(path, f"{what} must be 8-bit, got {arr.dtype}")
    return arr


def convert_file(image: Path, semantic: Path, instance: Path, out_png: Path
                 ) -> tuple[dict[str, Any] | None, dict[str, Any] | None, dict[str, int], str | None]:
    """Convert one image's files and write its panoptic PNG atomically.

    Args:
        image: the JPEG (its header gives the size).
        semantic: its semantic PNG.
        instance: its instance PNG.
        out_png: where the panoptic PNG goes.

    Returns:
        ``(image entry, annotation entry, stats, None)``, or ``(None, None, {}, reason)`` when an
        annotation file is missing (a counted skip).

    Raises:
        DataFormatError: unreadable or inconsistent files (naming the file).
    """
    stem = image.stem
    for path, what in ((semantic, "semantic PNG"), (instance, "instance PNG")):
        if not path.is_file():
            return None, None, {}, f"no {what} ({path.parent})"
    try:
        with Image.open(image) as im:
            width, height = im.size
    except (OSError, Image.DecompressionBombError) as e:
        raise DataFormatError(image, f"cannot be read as an image: {e}") from e
    sem = _read_png(semantic, "the semantic PNG")
    ins = _read_png(instance, "the instance PNG")
    if sem.ndim != 2:
        raise DataFormatError(semantic, f"semantic PNG must have one channel, got shape {sem.shape}")
    if ins.ndim != 3 or ins.shape[2] < 2:
        raise DataFormatError(instance, f"instance PNG must be RGB (R = class, G = instance id), got shape "
                                        f"{ins.shape}")
    for path, arr in ((semantic, sem), (instance, ins)):
        if arr.shape[:2] != (height, width):
            raise DataFormatError(path, f"is {arr.shape[1]}x{arr.shape[0]} but its image {image.name} is "
                                        f"{width}x{height}")
    ids, segments, stats = convert_image(sem, ins, where=f"{semantic} / {instance}")
    buf = io.BytesIO()
    Image.fromarray(id2rgb(ids)).save(buf, format="PNG")
    atomic_write_bytes(out_png, buf.getvalue())
    return ({"id": stem, "file_name": image.name, "width": width, "height": height},
            {"image_id": stem, "file_name": f"{stem}.png", "segments_info": segments}, stats, None)


def _convert_job(job: tuple[str, str, str, str]) -> tuple[str, Any, Any, dict[str, int], str | None]:
    image, semantic, instance, out_png = job
    img, ann, stats, skip = convert_file(Path(image), Path(semantic), Path(instance), Path(out_png))
    return Path(image).stem, img, ann, stats, skip


# ----------------------------------------------------------------------------- the release

def release_root(src: Path) -> Path:
    """The ``ADEChallengeData2016`` folder: ``src`` itself or ``src/ADEChallengeData2016``.

    Raises:
        PrepareError: neither holds ``images/`` and ``annotations/``.
    """
    for root in (src, src / "ADEChallengeData2016"):
        if (root / "images").is_dir() and (root / "annotations").is_dir():
            return root
    raise PrepareError(f"--src {src}: no ADEChallengeData2016 release found (expected images/ and annotations/ in "
                       f"{src} or {src / 'ADEChallengeData2016'}; download ADEChallengeData2016.zip from the MIT "
                       f"SceneParsing benchmark and unzip it)")


def read_mapping(path: Path) -> dict[int, int]:
    """Parse the instance release's ``categoryMapping.txt`` (header line, then ``ins sem full`` rows).

    Returns:
        instance class (1..100) -> 150-class id (1..150).

    Raises:
        DataFormatError: a malformed row, or one instance class mapped to two classes.
    """
    out: dict[int, int] = {}
    for n, line in enumerate(path.read_text().splitlines()):
        parts = line.split()
        if n == 0 or not parts:
            continue                      # the header ("Instacne100 SceneParse150 FullADE20K")
        try:
            ins, sem = int(parts[0]), int(parts[1])
        except (ValueError, IndexError):
            raise DataFormatError(path, f"line {n + 1}: expected 'instance_class class150 ...', got {line!r}") \
                from None
        if out.get(ins, sem) != sem:
            raise DataFormatError(path, f"line {n + 1}: instance class {ins} maps to both {out[ins]} and {sem}")
        out[ins] = sem
    return out


def check_mapping(root: Path, src: Path) -> str:
    """Compare the release's ``categoryMapping.txt`` (if found) with the built-in table.

    Returns:
        Where the mapping came from, for the summary and the fingerprint.

    Raises:
        PrepareError: the file disagrees with the built-in table.
    """
    for cand in (root / MAPPING_FILE, root / "annotations_instance" / MAPPING_FILE, root.parent / MAPPING_FILE,
                 src / MAPPING_FILE):
        if cand.is_file():
            found = read_mapping(cand)
            if found != INSTANCE_TO_SEMANTIC:
                diff = sorted(k for k in set(found) | set(INSTANCE_TO_SEMANTIC)
                              if found.get(k) != INSTANCE_TO_SEMANTIC.get(k))
                raise PrepareError(f"{cand} disagrees with the built-in ADE20K instance mapping (Mask2Former's "
                                   f"ade20k_instance_catid_mapping.txt) for instance classes {diff[:10]}")
            return f"{cand} (agrees with the built-in table)"
    return "built-in (no categoryMapping.txt found)"


def _split_dirs(root: Path, split: str) -> tuple[Path, Path, Path]:
    folder = SPLITS[split]
    dirs = (root / "images" / folder, root / "annotations" / folder, root / "annotations_instance" / folder)
    for d, hint in zip(dirs, ("from ADEChallengeData2016.zip", "from ADEChallengeData2016.zip",
                              "from annotations_instance.tar of the SceneParsing instance release, extracted "
                              "inside ADEChallengeData2016/ as Mask2Former's datasets/README.md describes")):
        if not d.is_dir():
            raise PrepareError(f"ADE20K {split}: folder {d} not found ({hint})")
    return dirs


# ----------------------------------------------------------------------------- a split

def _map_jobs(jobs: list[tuple[str, str, str, str]], workers: int
              ) -> Iterator[tuple[str, Any, Any, dict[str, int], str | None]]:
    if workers <= 1 or len(jobs) < 2:
        yield from map(_convert_job, jobs)
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as ex:
        yield from ex.map(_convert_job, jobs, chunksize=8)


def _done_from_json(json_path: Path, png_dir: Path, fingerprint: dict[str, Any]) -> dict[str, dict]:
    """Journal records of an earlier output made from the same inputs, for the images whose PNG is there."""
    try:
        with open(json_path) as f:
            data = json.load(f)
        if data.get("info", {}).get("fingerprint") != json.loads(json.dumps(fingerprint)):
            return {}
        images = {im["id"]: im for im in data["images"]}
        return {a["image_id"]: {"key": a["image_id"], "image": images[a["image_id"]], "annotation": a}
                for a in data["annotations"] if (png_dir / a["file_name"]).is_file()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def prepare_split(src: Path, out: Path, split: str, *, link: str = "symlink", workers: int = 1,
                  stream: TextIO | None = None) -> Summary:
    """Convert one ADE20K split into ``out/ade20k_panoptic`` (layout in the module docstring).

    Args:
        src: the download root (``ADEChallengeData2016`` or its parent).
        out: the data root.
        split: ``val`` or ``train``.
        link: how the images are placed (``symlink``, ``hardlink``, ``copy``).
        workers: processes converting images (1: in this process).
        stream: where progress and the summary go (default stdout).

    Returns:
        The split's :class:`Summary` (also printed).

    Raises:
        PrepareError: missing release folders, or a ``categoryMapping.txt`` that disagrees.
        DataFormatError: an unreadable or inconsistent annotation file (naming it).
    """
    root = release_root(src)
    image_dir, sem_dir, ins_dir = _split_dirs(root, split)
    mapping = check_mapping(root, src)
    dst = out / OUT_FOLDER
    json_path = dst / f"ade20k_panoptic_{split}.json"
    png_dir = dst / f"ade20k_panoptic_{split}"
    images_out = dst / "images" / SPLITS[split]
    fingerprint = {"converter": CONVERTER, "split": split, "images": str(image_dir.resolve()),
                   "semantic": str(sem_dir.resolve()), "instance": str(ins_dir.resolve()),
                   "mapping": mapping.split(" ")[0]}
    name = f"ade20k {split}"
    write_json_if_changed(dst / CATEGORIES_FILE, categories_json(), indent=1)
    # the marker also records the link mode and the folders' times (adding a missing PNG makes the next run
    # look again); the journal and the JSON only what the PNGs depend on
    marker = Marker.at(dst, split, {**fingerprint, "link": link,
                                    "mtimes": [d.stat().st_mtime_ns for d in (image_dir, sem_dir, ins_dir)]})
    previous = marker.finished()
    seed = _done_from_json(json_path, png_dir, fingerprint)
    if previous is not None and len(seed) == previous.counts.get("images"):
        previous.print(stream)
        return previous
    marker.clear()

    stems = [Path(n).stem for n in list_files(image_dir, (".jpg",))]
    if not stems:
        raise PrepareError(f"ADE20K {split}: no *.jpg images in {image_dir}")
    progress = ProgressLine(f"{name}: images", total=1 if link == "symlink" else len(stems), unit="file",
                            stream=stream)
    place_folder(image_dir, images_out, link, names=None if link == "symlink" else [f"{s}.jpg" for s in stems],
                 progress=progress)
    progress.close()

    png_dir.mkdir(parents=True, exist_ok=True)
    remove_temps(png_dir)
    journal = Journal(dst / MARKER_DIR / f"{split}.journal.jsonl", fingerprint)
    for key, rec in seed.items():
        if key not in journal.done:
            journal.add(rec)
    done = {s for s in stems if s in journal.done and (png_dir / f"{s}.png").is_file()}
    jobs = [(str(image_dir / f"{s}.jpg"), str(sem_dir / f"{s}.png"), str(ins_dir / f"{s}.png"),
             str(png_dir / f"{s}.png")) for s in stems if s not in done]
    skips = Skips()
    progress = ProgressLine(f"{name}: panoptic PNGs", total=len(stems), unit="img", stream=stream)
    progress.set(len(done), postfix=f"{len(done)} kept from an earlier run" if done else None)
    try:
        for stem, img, ann, stats, skip in _map_jobs(jobs, max(1, workers)):
            if skip is not None:
                skips.add(skip, stem)
            else:
                journal.add({"key": stem, "image": img, "annotation": ann, "stats": stats})
            progress.update(1)
    finally:
        progress.close()
        journal.close()

    records = [journal.done[s] for s in stems if s in journal.done]
    records = [r for r in records if (png_dir / r["annotation"]["file_name"]).is_file()]
    partial_stats = any("stats" not in r for r in records)
    atomic_write_json(json_path, {
        "info": {"description": f"ADE20K-150 panoptic {split} (Mask2Former's conversion of ADEChallengeData2016 "
                                f"+ annotations_instance)", "converter": CONVERTER, "fingerprint": fingerprint},
        "images": [r["image"] for r in records],
        "annotations": [r["annotation"] for r in records],
        "categories": categories_json(),
    })
    totals: dict[str, int] = {}
    for r in records:
        for k, v in r.get("stats", {}).items():
            totals[k] = totals.get(k, 0) + v
    n_seg = sum(len(r["annotation"]["segments_info"]) for r in records)
    summary = Summary(
        name,
        {"images": len(records), "segments": n_seg, "categories": len(ADE20K_150)},
        {"images": f"{EXPECTED_IMAGES[split]} for the official release",
         "categories": f"150: {NUM_THINGS} things, {NUM_STUFF} stuff"},
        skips,
        [f"segments: {totals.get('stuff_segments', 0)} stuff, {totals.get('thing_segments', 0)} things",
         f"stuff pixels painted over by instances: {totals.get('stuff_pixels_under_instances', 0)}; stuff "
         f"segments covered entirely and dropped: {totals.get('stuff_segments_covered', 0)}",
         f"thing-class pixels without an instance (void): {totals.get('thing_pixels_without_instance', 0)}; "
         f"instance pixels on unlabeled semantic pixels: {totals.get('instance_pixels_on_unlabeled', 0)}",
         f"instance mapping: {mapping}",
         f"images: {images_out} -> {image_dir}" if link == "symlink" else f"images: {link} of {image_dir}",
         f"written: {json_path}, {png_dir}/"]
        + (["(pixel statistics cover only the images converted since the last finished run)"]
           if partial_stats else []))
    marker.write(summary, [json_path.name, png_dir.name, f"images/{SPLITS[split]}"])
    if not skips.total:
        journal.path.unlink(missing_ok=True)
    summary.print(stream)
    return summary


def prepare(src: str | os.PathLike, out: str | os.PathLike, splits: tuple[str, ...] = ("val", "train"), *,
            link: str = "symlink", workers: int = 1, stream: TextIO | None = None) -> list[Summary]:
    """Convert the given ADE20K splits (see :func:`prepare_split`)."""
    for s in splits:
        if s not in SPLITS:
            raise ValueError(f"ADE20K split must be one of {tuple(SPLITS)}, got {s!r}")
    return [prepare_split(Path(src), Path(out), s, link=link, workers=workers, stream=stream) for s in splits]
