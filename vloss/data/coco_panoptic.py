"""COCO panoptic files (COCO panoptic, ADE20K panoptic): JSON + RGB-encoded PNGs.

A panoptic PNG stores one segment id per pixel as ``R + 256 G + 256^2 B`` (0 = void);
the JSON's ``segments_info`` describes each id. ``read_coco_panoptic`` checks the JSON;
the PNGs are large, so they are checked on request: ``check_pngs=True`` opens every one,
and :func:`check_panoptic_png` checks a single image (what a data loader calls as it
reads it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image

from vloss.data.errors import DataFormatError
from vloss.data.masks import rgb2id
from vloss.data.records import (
    ID,
    INT,
    NUMBER,
    Category,
    check_bbox,
    check_relative_name,
    get_field,
    get_list,
    image_size,
    load_json_object,
    read_categories,
    read_image_header,
    unknown_category,
    unknown_image,
)


@dataclass(frozen=True, slots=True)
class PanopticSegment:
    """One segment of a panoptic image.

    Args:
        id: segment id as encoded in the PNG.
        category_id: id in the file's ``categories``.
        iscrowd: crowd region (things only, in COCO).
        bbox: ``[x, y, w, h]`` as in the JSON.
        area: pixel count as in the JSON.
        isthing: from the category.
    """

    id: int
    category_id: int
    iscrowd: bool
    bbox: tuple[float, float, float, float]
    area: int
    isthing: bool


@dataclass(slots=True)
class PanopticImage:
    """One image of a panoptic dataset.

    Args:
        id: image id (int for COCO, str for the ADE20K conversion).
        file_name: image file name.
        image_path: absolute path of the image.
        png_path: absolute path of its panoptic PNG.
        height, width: image size.
        segments: its segments, in JSON order.
    """

    id: int | str
    file_name: str
    image_path: Path
    png_path: Path
    height: int
    width: int
    segments: list[PanopticSegment] = field(default_factory=list)

    def load_ids(self) -> np.ndarray:
        """[H, W] int64 segment ids of this image's PNG (0 = void)."""
        return load_panoptic_ids(self.png_path)


@dataclass
class PanopticDataset:
    """A parsed panoptic dataset.

    Args:
        json_path: the annotation file.
        image_dir: directory of the images.
        png_dir: directory of the panoptic PNGs.
        categories: categories in file order.
        images: images in file order.
    """

    json_path: Path
    image_dir: Path
    png_dir: Path
    categories: list[Category]
    images: list[PanopticImage]

    @cached_property
    def categories_by_id(self) -> dict[int, Category]:
        return {c.id: c for c in self.categories}

    @cached_property
    def images_by_id(self) -> dict[int | str, PanopticImage]:
        return {im.id: im for im in self.images}

    @property
    def vocabulary(self) -> list[str]:
        """Category names in file order."""
        return [c.name for c in self.categories]

    @property
    def thing_names(self) -> list[str]:
        return [c.name for c in self.categories if c.isthing]

    @property
    def stuff_names(self) -> list[str]:
        return [c.name for c in self.categories if not c.isthing]

    @property
    def num_segments(self) -> int:
        return sum(len(im.segments) for im in self.images)

    def __len__(self) -> int:
        return len(self.images)


def load_panoptic_ids(png_path: str | Path) -> np.ndarray:
    """Decode a panoptic PNG.

    Args:
        png_path: an RGB PNG with ids encoded as ``R + 256 G + 256^2 B``.

    Returns:
        [H, W] int64 segment ids.
    """
    png_path = Path(png_path)
    try:
        with Image.open(png_path) as im:
            rgb = np.asarray(im.convert("RGB"))  # [H, W, 3] uint8
    except FileNotFoundError:
        raise
    except (OSError, Image.DecompressionBombError) as e:
        raise DataFormatError(png_path, f"cannot be read as an image: {e}") from e
    return rgb2id(rgb)


def check_panoptic_png(image: PanopticImage, ids: np.ndarray | None = None) -> np.ndarray:
    """Check that an image's PNG and its ``segments_info`` agree.

    Every listed segment must occur in the PNG, every non-zero PNG id must be listed,
    and the PNG must have the image's size.

    Args:
        image: the image record.
        ids: its decoded PNG ([H, W] int64), loaded when None.

    Returns:
        The [H, W] int64 id map.
    """
    if ids is None:
        ids = image.load_ids()
    where = f"image id {image.id}"
    if ids.shape != (image.height, image.width):
        raise DataFormatError(image.png_path, f"PNG is {ids.shape[1]}x{ids.shape[0]} but the JSON says "
                                              f"{image.width}x{image.height}", field="height/width",
                              record=where)
    present = set(np.unique(ids).tolist())
    present.discard(0)
    listed = {s.id for s in image.segments}
    missing = sorted(listed - present)
    if missing:
        raise DataFormatError(image.png_path, f"segment ids {missing} listed in segments_info are "
                                              f"missing from the PNG", field="segments_info", record=where)
    extra = sorted(present - listed)
    if extra:
        raise DataFormatError(image.png_path, f"PNG contains segment ids {extra[:10]} not listed in "
                                              f"segments_info", field="segments_info", record=where)
    return ids


def read_coco_panoptic(json_path: str | Path, image_dir: str | Path, png_dir: str | Path,
                       *, check_pngs: bool = False) -> PanopticDataset:
    """Read and validate a COCO-panoptic-format dataset.

    Args:
        json_path: e.g. ``annotations/panoptic_val2017.json``.
        image_dir: directory of the images (``images[].file_name``).
        png_dir: directory of the PNGs (``annotations[].file_name``).
        check_pngs: also open every PNG and check it against its segments.

    Returns:
        The :class:`PanopticDataset` (paths absolute).

    Raises:
        DataFormatError: naming file, record and field: bad JSON, missing keys, wrong
            types, duplicate ids, annotations for unknown images, images without an
            annotation, unknown category ids, non-positive boxes, PNG/JSON disagreement.
    """
    path = Path(json_path).resolve()
    image_dir = Path(image_dir).resolve()
    png_dir = Path(png_dir).resolve()
    data = load_json_object(path)
    categories = read_categories(data, path, require_isthing=True)
    cats = {c.id: c for c in categories}

    headers: dict = {}
    seen: set = set()
    for k, img in enumerate(get_list(data, "images", path)):
        image_id, where = read_image_header(img, k, path, seen)
        file_name = check_relative_name(get_field(img, "file_name", (str,), path, where), path, where)
        h, w = image_size(img, path, where)
        headers[image_id] = (file_name, h, w)

    images: dict = {}
    for k, ann in enumerate(get_list(data, "annotations", path)):
        image_id = get_field(ann, "image_id", ID, path, f"annotations[{k}]")
        where = f"image id {image_id}"
        if image_id not in headers:
            raise unknown_image(path, f"annotations[{k}]", image_id)
        if image_id in images:
            raise DataFormatError(path, "second annotation entry for this image", field="image_id",
                                  record=where)
        png_name = check_relative_name(get_field(ann, "file_name", (str,), path, where), path, where)
        file_name, h, w = headers[image_id]
        record = PanopticImage(image_id, file_name, image_dir / file_name, png_dir / png_name, h, w)
        seg_ids: set = set()
        for s in get_field(ann, "segments_info", (list,), path, where):
            sid = get_field(s, "id", INT, path, where)
            swhere = f"{where} segment id {sid}"
            if sid <= 0 or sid >= 256 ** 3:
                raise DataFormatError(path, "segment ids must lie in [1, 256**3)", field="id", record=swhere)
            if sid in seg_ids:
                raise DataFormatError(path, "duplicate segment id", field="id", record=swhere)
            seg_ids.add(sid)
            cid = get_field(s, "category_id", INT, path, swhere)
            if cid not in cats:
                raise unknown_category(path, swhere, cid)
            bbox = check_bbox(get_field(s, "bbox", (list,), path, swhere), path, swhere)
            area = get_field(s, "area", NUMBER, path, swhere)
            if area <= 0:
                raise DataFormatError(path, f"must be positive, got {area}", field="area", record=swhere)
            crowd = get_field(s, "iscrowd", INT, path, swhere, optional=True, default=0)
            record.segments.append(PanopticSegment(sid, cid, bool(crowd), tuple(bbox), int(area),
                                                   bool(cats[cid].isthing)))
        images[image_id] = record

    missing = [i for i in headers if i not in images]
    if missing:
        raise DataFormatError(path, f"{len(missing)} images have no annotation entry (first: {missing[0]!r})",
                              field="annotations", record=f"image id {missing[0]}")
    dataset = PanopticDataset(path, image_dir, png_dir, categories, [images[i] for i in headers])
    if check_pngs:
        for im in dataset.images:
            check_panoptic_png(im)
    return dataset
