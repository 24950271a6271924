"""Objects365 v2 train from the official download -> ``objects365/`` (COCO detection JSON + images).

Input (``--src``: the Objects365 v2 download root)::

    zhiyuan_objv2_train.json      (also found as train/zhiyuan_objv2_train.json or
                                   annotations/zhiyuan_objv2_train.json; extract the .tar.gz first)
    train/patch0/ .. train/patch50/*.jpg    (or images/v2/patchN/, images/v1/patchN/,
                                             images/train/patchN/, or patchN/ directly in --src)

The released JSON names files ``images/v1/patch8/objects365_v1_00420917.jpg`` or
``images/v2/patch16/objects365_v2_00908726.jpg``, while the extracted patch archives hold them
as ``train/patch8/objects365_v1_00420917.jpg``. An image is looked up, in order, as
``--src/FILE_NAME``, then as ``ROOT/patchN/NAME`` and ``ROOT/NAME`` for each ``ROOT`` of
:data:`IMAGE_ROOTS` that exists, where ``patchN`` and ``NAME`` are the last folder named
``patch<digits>`` and the base name of ``file_name`` (so v1 and v2 prefixes both resolve).

Output (``--out DATA_ROOT``)::

    objects365/images/train/patchN/NAME       symlinks (default), hard links or copies
    objects365/annotations/train.json         the released JSON with ``file_name`` = ``patchN/NAME``
                                              (relative to objects365/images/train); every other
                                              field as released

Counted skips (reported with examples): images whose file is not found (with their boxes),
boxes with a non-positive width or height, boxes entirely outside their image; boxes of
unknown images or categories are errors. Objects365 ships boxes only; ``area`` is kept as given.
A re-run with the same JSON and unchanged image folders is a no-op; extracting more patches
changes the folders, and the next run looks for the missing images again (kept links stay).

Expected for the official v2 release: about 1.74M train images, 365 categories.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from typing import Any, TextIO

from vloss.data.errors import DataFormatError
from vloss.data.prepare.common import (
    Marker,
    PrepareError,
    Skips,
    Summary,
    atomic_write_json,
    file_identity,
    maybe_input,
    place_file,
    remove_temps,
)
from vloss.data.records import check_relative_name, get_field, get_list, load_json_object
from vloss.progress import ProgressLine

CONVERTER = "vloss.data.prepare.objects365/1"
SPLITS = ("train",)
OUT_FOLDER = "objects365"
JSON_CANDIDATES = ("zhiyuan_objv2_train.json", "train/zhiyuan_objv2_train.json",
                   "annotations/zhiyuan_objv2_train.json")
IMAGE_ROOTS = ("train", "images/v2", "images/v1", "images/train", "images", ".")
PATCH = re.compile(r"^patch\d+$")
EXPECTED = {"images": "about 1.74M for the official v2 release", "categories": "365"}


class ImageFinder:
    """Finds a released ``file_name`` in the download, listing each patch folder once.

    Args:
        src: the download root.
    """

    def __init__(self, src: Path) -> None:
        self.src = src
        self.roots = [src / r for r in IMAGE_ROOTS if (src / r).is_dir()]
        self._listing: dict[Path, set[str] | None] = {}

    def folder_times(self) -> dict[str, int]:
        """Modification times of the roots and their patch folders: they change when files are added."""
        out = {}
        for root in self.roots:
            out[str(root.resolve())] = root.stat().st_mtime_ns
            with os.scandir(root) as it:
                for e in it:
                    if PATCH.match(e.name) and e.is_dir():
                        out[str(Path(e.path).resolve())] = e.stat().st_mtime_ns
        return out

    def _names(self, folder: Path) -> set[str]:
        if folder not in self._listing:
            try:
                self._listing[folder] = set(os.listdir(folder)) if folder.is_dir() else None
            except OSError:
                self._listing[folder] = None
        return self._listing[folder] or set()

    def find(self, file_name: str) -> tuple[Path | None, str]:
        """``(source file or None, output name relative to images/train)``."""
        parts = PurePosixPath(file_name.replace("\\", "/")).parts
        name = parts[-1]
        patch = next((p for p in reversed(parts[:-1]) if PATCH.match(p)), None)
        rel = f"{patch}/{name}" if patch else name
        direct = self.src / file_name
        if direct.is_file():
            return direct, rel
        for root in self.roots:
            if patch and name in self._names(root / patch):
                return root / patch / name, rel
            if name in self._names(root):
                return root / name, rel
        return None, rel

    def hint(self, file_name: str) -> str:
        """Why a file may be missing: its patch folder exists nowhere, or only as an archive."""
        parts = PurePosixPath(file_name).parts
        patch = next((p for p in reversed(parts[:-1]) if PATCH.match(p)), None)
        if patch is None:
            return ""
        if not any((r / patch).is_dir() for r in self.roots):
            archives = [r / f"{patch}.tar.gz" for r in self.roots if (r / f"{patch}.tar.gz").is_file()]
            return f" ({patch}/ not extracted: {archives[0]})" if archives else f" (no {patch}/ folder)"
        return ""


def _find_json(src: Path) -> Path:
    found = maybe_input(src, JSON_CANDIDATES)
    if found is not None:
        return found
    archives = [src / (c + ext) for c in JSON_CANDIDATES for ext in (".tar.gz", ".gz", ".zip")
                if (src / (c + ext)).is_file()]
    hint = f"; found {archives[0]}: extract it first" if archives else ""
    raise PrepareError(f"Objects365: zhiyuan_objv2_train.json not found under --src {src} (tried "
                       f"{', '.join(str(src / c) for c in JSON_CANDIDATES)}){hint}")


def prepare_split(src: Path, out: Path, split: str = "train", *, link: str = "symlink",
                  stream: TextIO | None = None) -> Summary:
    """Link the Objects365 v2 train images and write ``objects365/annotations/train.json``.

    Args:
        src: the download root.
        out: the data root.
        split: ``train`` (the only split the recipes use).
        link: ``symlink``, ``hardlink`` or ``copy`` for the images.
        stream: where progress and the summary go (default stdout).

    Returns:
        The :class:`Summary` (also printed).

    Raises:
        PrepareError: no annotation file, or no image found at all.
        DataFormatError: a malformed JSON (naming file, record and field).
    """
    if split != "train":
        raise ValueError(f"Objects365 split must be 'train', got {split!r}")
    json_in = _find_json(src)
    finder = ImageFinder(src)
    fingerprint = {"converter": CONVERTER, "json": file_identity(json_in), "folders": finder.folder_times(),
                   "link": link}
    dst = out / OUT_FOLDER
    json_out = dst / "annotations" / "train.json"
    image_out = dst / "images" / "train"
    name = "objects365 train"
    marker = Marker.at(dst, split, fingerprint)
    previous = marker.finished()
    if previous is not None:
        previous.print(stream)
        return previous
    marker.clear()

    progress = ProgressLine(f"{name}: read {json_in.name}", total=None, unit="file", stream=stream)
    data = load_json_object(json_in)
    images = get_list(data, "images", json_in)
    annotations = get_list(data, "annotations", json_in)
    categories = get_list(data, "categories", json_in)
    progress.update(1)
    progress.close()
    cat_ids = {get_field(c, "id", (int,), json_in, f"categories[{k}]") for k, c in enumerate(categories)}

    skips = Skips()
    kept: list[dict[str, Any]] = []
    sizes: dict[Any, tuple[int, int]] = {}
    out_names: dict[str, Any] = {}
    cleaned: set[Path] = set()
    made = 0
    progress = ProgressLine(f"{name}: images", total=len(images), unit="img", stream=stream)
    for k, img in enumerate(images):
        where = f"images[{k}]"
        iid = get_field(img, "id", (int,), json_in, where)
        where = f"image id {iid}"
        file_name = check_relative_name(get_field(img, "file_name", (str,), json_in, where), json_in, where)
        h = get_field(img, "height", (int,), json_in, where)
        w = get_field(img, "width", (int,), json_in, where)
        if iid in sizes:
            raise DataFormatError(json_in, "duplicate image id", field="id", record=where)
        source, rel = finder.find(file_name)
        if source is None:
            skips.add("image file not found in the download", file_name + finder.hint(file_name))
        elif rel in out_names:
            raise DataFormatError(json_in, f"two images (ids {out_names[rel]} and {iid}) resolve to the same "
                                           f"file {rel}", field="file_name", record=where)
        else:
            target = image_out / rel
            if target.parent not in cleaned:
                remove_temps(target.parent)
                cleaned.add(target.parent)
            made += place_file(source, target, link)
            out_names[rel] = iid
            kept.append({**img, "file_name": rel})
            sizes[iid] = (h, w)
        sizes.setdefault(iid, (0, 0))
        if k % 1024 == 0:
            progress.set(k + 1, postfix=f"{skips.total} not found" if skips.total else None)
    progress.set(len(images), postfix=f"{skips.total} not found" if skips.total else None)
    progress.close()
    if not kept:
        raise PrepareError(f"Objects365: none of the {len(images)} images of {json_in} was found under --src {src} "
                           f"(looked in {', '.join(str(r) for r in finder.roots)}); e.g. "
                           f"{', '.join(skips.examples.get('image file not found in the download', []))}")

    found = {im["id"] for im in kept}
    boxes: list[dict[str, Any]] = []
    progress = ProgressLine(f"{name}: boxes", total=len(annotations), unit="box", stream=stream)
    for k, a in enumerate(annotations):
        if not isinstance(a, dict):
            raise DataFormatError(json_in, "expected an object", record=f"annotations[{k}]")
        aid = a.get("id")
        where = f"annotation id {aid}"
        iid = a.get("image_id")
        if iid not in sizes:
            raise DataFormatError(json_in, f"image id {iid!r} is not in 'images'", field="image_id", record=where)
        if a.get("category_id") not in cat_ids:
            raise DataFormatError(json_in, f"category id {a.get('category_id')!r} is not in 'categories'",
                                  field="category_id", record=where)
        bbox = a.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)):
            raise DataFormatError(json_in, f"expected [x, y, w, h], got {bbox!r}", field="bbox", record=where)
        if iid not in found:
            skips.add("box of an image whose file was not found", f"annotation id {aid}")
        elif bbox[2] <= 0 or bbox[3] <= 0:
            skips.add("box with non-positive width or height", f"annotation id {aid} bbox {bbox}")
        else:
            h, w = sizes[iid]
            x0, y0 = max(bbox[0], 0), max(bbox[1], 0)
            x1, y1 = min(bbox[0] + bbox[2], w), min(bbox[1] + bbox[3], h)
            if x1 <= x0 or y1 <= y0:
                skips.add("box entirely outside its image", f"annotation id {aid} bbox {bbox} in {w}x{h}")
            else:
                boxes.append(a)
        if k % 4096 == 0:
            progress.set(k + 1)
    progress.set(len(annotations))
    progress.close()

    progress = ProgressLine(f"{name}: write {json_out.name}", total=None, unit="file", stream=stream)
    result = {key: value for key, value in data.items() if key not in ("images", "annotations", "categories")}
    result.update({"images": kept, "annotations": boxes, "categories": categories})
    atomic_write_json(json_out, result)
    progress.update(1)
    progress.close()

    summary = Summary(name, {"images": len(kept), "boxes": len(boxes), "categories": len(categories)}, EXPECTED,
                      skips, [f"images placed now: {made}, kept from an earlier run: {len(kept) - made} ({link})",
                              f"written: {json_out}, {image_out}/"])
    marker.write(summary, ["annotations/train.json", "images/train"])
    summary.print(stream)
    return summary


def prepare(src: str | os.PathLike, out: str | os.PathLike, splits: tuple[str, ...] = SPLITS, *,
            link: str = "symlink", stream: TextIO | None = None) -> list[Summary]:
    """Prepare Objects365 v2 train (see :func:`prepare_split`)."""
    return [prepare_split(Path(src), Path(out), s, link=link, stream=stream) for s in splits]
