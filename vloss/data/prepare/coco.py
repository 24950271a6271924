"""COCO 2017 from the official downloads: check the files, then link them into ``coco_panoptic/``.

Input (``--src``: the folder the COCO zips were unpacked in)::

    train2017/*.jpg  val2017/*.jpg                                   train2017.zip, val2017.zip
    annotations/panoptic_{train,val}2017.json                        panoptic_annotations_trainval2017.zip
    annotations/panoptic_{train,val}2017/*.png   (or the nested annotations/panoptic_{train,val}2017.zip,
                                                  extracted here into the output)
    annotations/captions_{train,val}2017.json                        annotations_trainval2017.zip
    annotations/instances_{train,val}2017.json                       annotations_trainval2017.zip

Required: the panoptic JSON, PNGs and images of each split, and ``captions_train2017.json`` (the
training recipes read it). The val captions and both instance files are checked when present
(``instances_val2017.json`` is what the ``coco_instances`` evaluation reads).

Checks: every JSON is read and validated by the project's own readers; every panoptic
``annotations`` entry has its PNG and every image its file; the captions and instance files
list the same image ids as the panoptic file, with the same file names.

Output (``--out DATA_ROOT``), nothing rewritten (folders and files are symlinks by default)::

    coco_panoptic/{train2017,val2017}
    coco_panoptic/annotations/panoptic_{train,val}2017.json  + panoptic_{train,val}2017/
    coco_panoptic/annotations/captions_{train,val}2017.json  instances_{train,val}2017.json (when present)

Expected for the official release: panoptic train 118287 images, val 5000 images, 133
categories (80 things, 53 stuff); captions train 591753, val 25014; instances train 860001
annotations, val 36781 annotations (80 categories).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TextIO

from vloss.data.coco_captions import read_coco_captions
from vloss.data.coco_detection import read_coco_detection
from vloss.data.coco_panoptic import read_coco_panoptic
from vloss.data.prepare.common import (
    Marker,
    PrepareError,
    Skips,
    Summary,
    extract_zip_folder,
    file_identity,
    list_files,
    maybe_input,
    place_file,
    place_folder,
    zip_members,
)
from vloss.progress import ProgressLine

CONVERTER = "vloss.data.prepare.coco/1"
SPLITS = ("train", "val")
OUT_FOLDER = "coco_panoptic"
EXPECTED = {
    "train": {"images": "118287", "captions": "591753", "instances": "860001"},
    "val": {"images": "5000", "captions": "25014", "instances": "36781"},
}
EXAMPLES = 5


def _missing(what: str, where: Path, names: list[str], total: int) -> PrepareError:
    return PrepareError(f"COCO: {len(names)} of {total} {what} missing from {where}; "
                        f"e.g. {', '.join(names[:EXAMPLES])}")


def _same_images(kind: str, path: Path, ids: dict[Any, str], panoptic: dict[Any, str], pan_path: Path) -> None:
    """The image ids (and their file names) of ``path`` must be those of the panoptic file."""
    only_here = [i for i in ids if i not in panoptic]
    only_pan = [i for i in panoptic if i not in ids]
    if only_here or only_pan:
        raise PrepareError(f"COCO: {path} ({kind}) and {pan_path} list different images: {len(only_here)} only in "
                           f"the {kind} file (e.g. {only_here[:EXAMPLES]}), {len(only_pan)} only in the panoptic "
                           f"file (e.g. {only_pan[:EXAMPLES]})")
    renamed = [i for i in ids if ids[i] != panoptic[i]]
    if renamed:
        i = renamed[0]
        raise PrepareError(f"COCO: {len(renamed)} images have another file_name in {path} than in {pan_path}; e.g. "
                           f"image id {i}: {ids[i]!r} vs {panoptic[i]!r}")


def prepare_split(src: Path, out: Path, split: str, *, link: str = "symlink", stream: TextIO | None = None
                  ) -> Summary:
    """Check one COCO split and place it into ``out/coco_panoptic`` (see the module docstring).

    Args:
        src: the COCO download root.
        out: the data root.
        split: ``train`` or ``val``.
        link: ``symlink`` (folders and files), ``hardlink`` or ``copy`` (file by file).
        stream: where progress and the summary go (default stdout).

    Returns:
        The split's :class:`Summary` (also printed).

    Raises:
        PrepareError: a required file or folder missing, PNGs or images missing, or files that
            disagree about the images (counts and first examples in the message).
        DataFormatError: a malformed JSON (from the project's readers, naming file, record, field).
    """
    year = f"{split}2017"
    ann = src / "annotations"
    pan_json = maybe_input(src, [f"annotations/panoptic_{year}.json"])
    if pan_json is None:
        raise PrepareError(f"COCO {split}: {ann / f'panoptic_{year}.json'} not found (from "
                           f"panoptic_annotations_trainval2017.zip, unzipped in --src {src})")
    png_src = maybe_input(src, [f"annotations/panoptic_{year}", f"panoptic_{year}"], kind="dir")
    png_zip = None if png_src is not None else maybe_input(src, [f"annotations/panoptic_{year}.zip"])
    if png_src is None and png_zip is None:
        raise PrepareError(f"COCO {split}: no panoptic PNGs: neither {ann / f'panoptic_{year}'}/ nor "
                           f"{ann / f'panoptic_{year}.zip'} (the zip inside panoptic_annotations_trainval2017.zip)")
    image_src = maybe_input(src, [year], kind="dir")
    if image_src is None:
        raise PrepareError(f"COCO {split}: image folder {src / year} not found (from {year}.zip)")
    captions = maybe_input(src, [f"annotations/captions_{year}.json"])
    if captions is None and split == "train":
        raise PrepareError(f"COCO train: {ann / 'captions_train2017.json'} not found (from "
                           f"annotations_trainval2017.zip); the training recipes read the COCO captions")
    instances = maybe_input(src, [f"annotations/instances_{year}.json"])
    inputs = [p for p in (pan_json, png_zip, captions, instances) if p is not None]
    fingerprint = {"converter": CONVERTER, "split": split, "files": [file_identity(p) for p in inputs],
                   "folders": [str(p.resolve()) for p in (png_src, image_src) if p is not None], "link": link}
    dst = out / OUT_FOLDER
    name = f"coco {split}"
    marker = Marker.at(dst, split, fingerprint)
    previous = marker.finished()
    if previous is not None:
        previous.print(stream)
        return previous
    marker.clear()

    n_checks = 3 + (captions is not None) + (instances is not None)
    progress = ProgressLine(f"{name}: check", total=n_checks, unit="file", stream=stream)
    pan = read_coco_panoptic(pan_json, image_src, png_src or ann / f"panoptic_{year}")
    progress.update(1, postfix=pan_json.name)
    pan_names = {im.id: im.file_name for im in pan.images}
    png_names = set(list_files(png_src) if png_src is not None else zip_members(png_zip, f"panoptic_{year}/"))
    missing = [im.png_path.name for im in pan.images if im.png_path.name not in png_names]
    if missing:
        raise _missing("panoptic PNGs", png_src or png_zip, missing, len(pan.images))
    progress.update(1, postfix="panoptic PNGs")
    image_names = set(list_files(image_src))
    missing = [im.file_name for im in pan.images if im.file_name not in image_names]
    if missing:
        raise _missing("images", image_src, missing, len(pan.images))
    progress.update(1, postfix="images")
    counts: dict[str, int] = {"images": len(pan.images), "segments": pan.num_segments,
                              "categories": len(pan.categories)}
    notes = [f"categories: {len(pan.thing_names)} things, {len(pan.stuff_names)} stuff"]
    if captions is not None:
        cap = read_coco_captions(captions, image_src)
        _same_images("captions", captions, {im.id: im.file_name for im in cap.images}, pan_names, pan_json)
        counts["captions"] = cap.num_captions
        without = sum(1 for im in cap.images if not im.captions)
        notes.append(f"captions: {cap.num_captions} for {len(cap.images)} images ({without} without a caption)")
        progress.update(1, postfix=captions.name)
    else:
        notes.append(f"captions_{year}.json not found (optional for {split})")
    if instances is not None:
        det = read_coco_detection(instances, image_src)
        _same_images("instances", instances, {im.id: im.file_name for im in det.images}, pan_names, pan_json)
        counts["instances"] = det.num_annotations
        notes.append(f"instances: {det.num_annotations} annotations, {len(det.categories)} categories")
        progress.update(1, postfix=instances.name)
    else:
        notes.append(f"instances_{year}.json not found (optional; the coco_instances evaluation reads the val one)")
    progress.close()

    outputs = [year, f"annotations/panoptic_{year}.json", f"annotations/panoptic_{year}"]
    total = 3 if link == "symlink" else len(image_names) + len(png_names) + 1
    progress = ProgressLine(f"{name}: place", total=total, unit="file", stream=stream)
    place_folder(image_src, dst / year, link, progress=progress)
    place_file(pan_json, dst / "annotations" / pan_json.name, link)
    progress.update(1)
    if png_src is not None:
        place_folder(png_src, dst / "annotations" / f"panoptic_{year}", link, progress=progress)
    else:
        if (dst / "annotations" / f"panoptic_{year}").is_symlink():
            (dst / "annotations" / f"panoptic_{year}").unlink()
        extract_zip_folder(png_zip, f"panoptic_{year}/", dst / "annotations" / f"panoptic_{year}", progress=progress)
    for extra in (captions, instances):
        if extra is not None:
            place_file(extra, dst / "annotations" / extra.name, link)
            outputs.append(f"annotations/{extra.name}")
    progress.close()

    expected = {k: f"{v} for the official release" for k, v in EXPECTED[split].items() if k in counts}
    expected["categories"] = "133: 80 things, 53 stuff"
    pngs = f"extracted from {png_zip}" if png_zip is not None else f"{link} of {png_src}"
    summary = Summary(name, counts, expected, Skips(), notes + [f"panoptic PNGs: {pngs}", f"written: {dst}/ ({link})"])
    marker.write(summary, outputs)
    summary.print(stream)
    return summary


def prepare(src: str | os.PathLike, out: str | os.PathLike, splits: tuple[str, ...] = SPLITS, *,
            link: str = "symlink", stream: TextIO | None = None) -> list[Summary]:
    """Check and place the given COCO splits (see :func:`prepare_split`)."""
    for s in splits:
        if s not in SPLITS:
            raise ValueError(f"COCO split must be one of {SPLITS}, got {s!r}")
    return [prepare_split(Path(src), Path(out), s, link=link, stream=stream) for s in splits]
