"""LVIS v1 val from the official downloads -> ``lvis/`` (the JSON and its COCO 2017 images).

Input (``--src``: the download root; ``--coco DIR`` names the COCO image root when it is elsewhere)::

    lvis_v1_val.json        (or lvis/lvis_v1_val.json, annotations/lvis_v1_val.json, or the
                             released lvis_v1_val.json.zip in any of those places, extracted here)
    val2017/*.jpg train2017/*.jpg   the COCO 2017 images (in --coco, --src or --src/coco)

LVIS v1 images carry no ``file_name``; each image's file is named by its ``coco_url``
(``http://images.cocodataset.org/train2017/000000391895.jpg``): the last component is the file
name, the one before it the COCO folder. LVIS v1 val draws its images from COCO train2017 *and*
val2017; an image not in the folder its URL names is also looked for in the other one.

Output (``--out DATA_ROOT``)::

    lvis/lvis_v1_val.json                 the released JSON (symlink by default; extracted from
                                          the zip when only the zip is there)
    lvis/val2017/*.jpg lvis/train2017/*.jpg   each image under the folder its coco_url names,
                                          where :func:`vloss.data.lvis_format.resolve_lvis_image_path`
                                          looks for it with ``lvis/`` as the image root

Images that cannot be found are an error (listing how many and examples) after every found
one is placed: the evaluation needs all of them. A re-run places only what is missing.

Expected for the official release: 19809 images, 1203 categories (337 rare, 461 common, 405
frequent), about 245k annotations.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import TextIO

from vloss.data.lvis_format import read_lvis
from vloss.data.prepare.common import (
    Marker,
    PrepareError,
    Skips,
    Summary,
    extract_zip_file,
    file_identity,
    maybe_input,
    place_file,
    remove_temps,
)
from vloss.progress import ProgressLine

CONVERTER = "vloss.data.prepare.lvis/1"
SPLITS = ("val",)
OUT_FOLDER = "lvis"
JSON_NAME = "lvis_v1_val.json"
JSON_PLACES = ("", "lvis/", "annotations/")
COCO_FOLDERS = ("train2017", "val2017")
EXPECTED = {"images": "19809 for the official release", "categories": "1203: 337 r, 461 c, 405 f"}


def coco_root(src: Path, coco: Path | None) -> Path:
    """The folder holding ``val2017/`` (and ``train2017/``): ``coco``, else ``src`` or ``src/coco``.

    Raises:
        PrepareError: none holds ``val2017/`` or ``train2017/``.
    """
    cands = [coco] if coco is not None else [src, src / "coco"]
    for c in cands:
        if any((c / f).is_dir() for f in COCO_FOLDERS):
            return c
    raise PrepareError(f"LVIS: no COCO 2017 image folders (val2017/, train2017/) in {', '.join(map(str, cands))}; "
                       f"pass --coco DIR")


def prepare_split(src: Path, out: Path, split: str = "val", *, link: str = "symlink", coco: Path | None = None,
                  stream: TextIO | None = None) -> Summary:
    """Place LVIS v1 val and its images into ``out/lvis`` (see the module docstring).

    Args:
        src: the download root.
        out: the data root.
        split: ``val``.
        link: ``symlink``, ``hardlink`` or ``copy`` (JSON and images).
        coco: the COCO image root (default: ``src`` or ``src/coco``).
        stream: where progress and the summary go (default stdout).

    Returns:
        The :class:`Summary` (also printed).

    Raises:
        PrepareError: no JSON, no COCO folders, or images that cannot be found.
        DataFormatError: a malformed JSON (from the project's LVIS reader).
    """
    if split != "val":
        raise ValueError(f"LVIS split must be 'val', got {split!r}")
    json_in = maybe_input(src, [p + JSON_NAME for p in JSON_PLACES])
    json_zip = None if json_in is not None else maybe_input(src, [p + JSON_NAME + ".zip" for p in JSON_PLACES])
    if json_in is None and json_zip is None:
        raise PrepareError(f"LVIS: {JSON_NAME} (or {JSON_NAME}.zip) not found under --src {src} (tried "
                           f"{', '.join(str(src / (p + JSON_NAME)) for p in JSON_PLACES)})")
    root = coco_root(src, coco)
    folders = {f: root / f for f in COCO_FOLDERS if (root / f).is_dir()}
    fingerprint = {"converter": CONVERTER, "json": file_identity(json_in or json_zip),
                   "coco": {f: [str(p.resolve()), p.stat().st_mtime_ns] for f, p in folders.items()}, "link": link}
    dst = out / OUT_FOLDER
    json_out = dst / JSON_NAME
    name = "lvis val"
    marker = Marker.at(dst, split, fingerprint)
    previous = marker.finished()
    if previous is not None:
        previous.print(stream)
        return previous
    marker.clear()

    if json_in is not None:
        place_file(json_in, json_out, link)
    else:
        extract_zip_file(json_zip, JSON_NAME, json_out)
    progress = ProgressLine(f"{name}: read {JSON_NAME}", total=None, unit="file", stream=stream)
    ds = read_lvis(json_out, dst)
    progress.update(1)
    progress.close()

    listings = {f: set(os.listdir(p)) for f, p in folders.items()}
    missing = Skips()
    by_folder = {f: 0 for f in COCO_FOLDERS}
    other = made = 0
    for f in COCO_FOLDERS:
        remove_temps(dst / f)
    progress = ProgressLine(f"{name}: images", total=len(ds.images), unit="img", stream=stream)
    for im in ds.images:
        target = im.path                       # lvis/<folder of coco_url>/<name>, as the reader resolves it
        folder, fname = target.parent.name, target.name
        source = None
        for f in [folder] + [g for g in COCO_FOLDERS if g != folder]:
            if fname in listings.get(f, ()):
                source = folders[f] / fname
                other += f != folder
                break
        if source is None:
            missing.add(f"image not found in {', '.join(str(p) for p in folders.values())}",
                        f"image id {im.id} ({PurePosixPath(im.coco_url or '').name or im.file_name})")
        else:
            made += place_file(source, target, link)
            by_folder[folder] = by_folder.get(folder, 0) + 1
        progress.update(1, postfix=f"{missing.total} not found" if missing.total else None)
    progress.close()
    if missing.total:
        reason, n = next(iter(missing.counts.items()))
        raise PrepareError(f"LVIS: {n} of {len(ds.images)} images of {json_out.name}: {reason}; e.g. "
                           f"{', '.join(missing.examples[reason])} (the {len(ds.images) - n} found are placed; "
                           f"re-run after adding the missing ones)")

    freq = ds.frequency_counts()
    summary = Summary(name, {"images": len(ds.images), "annotations": ds.num_annotations,
                             "categories": len(ds.categories)}, EXPECTED, Skips(),
                      [f"categories by frequency: {freq['r']} r, {freq['c']} c, {freq['f']} f",
                       "images by COCO folder: " + ", ".join(f"{k} {v}" for k, v in by_folder.items())
                       + (f" ({other} found in the other folder than their coco_url names)" if other else ""),
                       f"images placed now: {made}, kept from an earlier run: {len(ds.images) - made} ({link})",
                       f"JSON: {'extracted from ' + str(json_zip) if json_zip else link + ' of ' + str(json_in)}",
                       f"written: {dst}/"])
    marker.write(summary, [JSON_NAME] + [f for f, n in by_folder.items() if n])
    summary.print(stream)
    return summary


def prepare(src: str | os.PathLike, out: str | os.PathLike, splits: tuple[str, ...] = SPLITS, *,
            link: str = "symlink", coco: str | os.PathLike | None = None, stream: TextIO | None = None
            ) -> list[Summary]:
    """Prepare LVIS v1 val (see :func:`prepare_split`)."""
    return [prepare_split(Path(src), Path(out), s, link=link, coco=None if coco is None else Path(coco),
                          stream=stream) for s in splits]
