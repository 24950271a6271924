"""COCO detection files (COCO instances, Objects365): images with box annotations.

``read_coco_detection`` validates every annotation (known image, known category,
``[x, y, w, h]`` with positive width and height, numeric area) with plain dict/list
operations, so that the pseudo-mask job can check an Objects365 file of 100k+ boxes
before any Ray work starts. ``segmentation`` is kept as given (polygons or RLE), or None
for box-only files; decode it with :func:`vloss.data.masks.segmentation_to_mask`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator

from vloss.data.errors import DataFormatError
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


@dataclass(slots=True)
class DetectionAnnotation:
    """One box annotation.

    Args:
        id: annotation id.
        image_id: id of its image.
        category_id: id in the file's ``categories``.
        bbox: ``[x, y, w, h]`` in pixels (w, h > 0).
        area: as the file gives it (mask area for COCO, box area for Objects365).
        iscrowd: 1 for crowd regions.
        segmentation: polygons / RLE as in the file, or None.
    """

    id: int
    image_id: int | str
    category_id: int
    bbox: list[float]
    area: float
    iscrowd: int
    segmentation: Any = None


@dataclass(slots=True)
class DetectionImage:
    """One image and its annotations.

    Args:
        id: image id.
        file_name: as in the file.
        path: ``image_dir / file_name``.
        height, width: image size in pixels.
        annotations: its annotations, in file order.
    """

    id: int | str
    file_name: str
    path: Path
    height: int
    width: int
    annotations: list[DetectionAnnotation] = field(default_factory=list)


@dataclass
class DetectionDataset:
    """A parsed COCO detection file.

    Args:
        json_path: the annotation file.
        image_dir: directory the ``file_name`` entries are relative to.
        categories: categories in file order.
        images: images in file order.
    """

    json_path: Path
    image_dir: Path
    categories: list[Category]
    images: list[DetectionImage]

    @cached_property
    def categories_by_id(self) -> dict[int, Category]:
        return {c.id: c for c in self.categories}

    @cached_property
    def images_by_id(self) -> dict[int | str, DetectionImage]:
        return {im.id: im for im in self.images}

    @property
    def vocabulary(self) -> list[str]:
        """Category names in file order."""
        return [c.name for c in self.categories]

    @property
    def num_annotations(self) -> int:
        return sum(len(im.annotations) for im in self.images)

    def annotations(self) -> Iterator[DetectionAnnotation]:
        """Every annotation, image by image."""
        for im in self.images:
            yield from im.annotations

    def __len__(self) -> int:
        return len(self.images)


def _check_annotation_slowly(a: Any, k: int, path: Path, images: dict, cat_ids: set) -> None:
    """Find the precise problem of an annotation the fast path rejected; always raises."""
    where = f"annotations[{k}]"
    aid = get_field(a, "id", ID, path, where)
    where = f"annotation id {aid}"
    image_id = get_field(a, "image_id", ID, path, where)
    where = f"annotation id {aid} of image id {image_id}"
    if image_id not in images:
        raise unknown_image(path, where, image_id)
    cid = get_field(a, "category_id", INT, path, where)
    if cid not in cat_ids:
        raise unknown_category(path, where, cid)
    check_bbox(get_field(a, "bbox", (list,), path, where), path, where)
    area = get_field(a, "area", NUMBER, path, where)
    if area < 0:
        raise DataFormatError(path, f"must be non-negative, got {area}", field="area", record=where)
    get_field(a, "iscrowd", INT, path, where, optional=True)
    get_field(a, "segmentation", (list, dict), path, where, optional=True)
    raise DataFormatError(path, "malformed annotation", record=where)


def read_coco_detection(json_path: str | Path, image_dir: str | Path) -> DetectionDataset:
    """Read and validate a COCO detection JSON.

    Args:
        json_path: e.g. ``objects365/annotations/train.json``.
        image_dir: directory holding the images (``file_name`` is relative to it).

    Returns:
        The :class:`DetectionDataset`.

    Raises:
        DataFormatError: naming the file, the record and the field, for bad JSON, missing
            keys, wrong types, duplicate ids, annotations naming an unknown image or
            category, non-positive box width/height or negative area.
    """
    path = Path(json_path)
    image_dir = Path(image_dir)
    data = load_json_object(path)
    categories = read_categories(data, path, require_isthing=False)
    cat_ids = {c.id for c in categories}

    images: dict[int | str, DetectionImage] = {}
    seen: set = set()
    for k, img in enumerate(get_list(data, "images", path)):
        image_id, where = read_image_header(img, k, path, seen)
        file_name = check_relative_name(get_field(img, "file_name", (str,), path, where), path, where)
        h, w = image_size(img, path, where)
        images[image_id] = DetectionImage(image_id, file_name, image_dir / file_name, h, w)

    ann_ids: set = set()
    for k, a in enumerate(get_list(data, "annotations", path)):
        # Fast path: direct lookups; anything unexpected goes to the slow, precise check.
        try:
            aid = a["id"]
            iid = a["image_id"]
            im = images[iid]
            cid = a["category_id"]
            bbox = a["bbox"]
            area = a["area"]
            ok = (cid in cat_ids and type(cid) is int and type(bbox) is list and len(bbox) == 4
                  and type(aid) in (int, str) and type(iid) in (int, str)
                  and type(area) in (int, float) and area >= 0)
            if ok:
                x, y, bw, bh = bbox
                ok = (type(x) in (int, float) and type(y) in (int, float) and type(bw) in (int, float)
                      and type(bh) in (int, float) and bw > 0 and bh > 0)
            crowd = a.get("iscrowd")
            crowd = 0 if crowd is None else crowd
            segm = a.get("segmentation")
            ok = ok and type(crowd) is int and (segm is None or type(segm) in (list, dict))
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            _check_annotation_slowly(a, k, path, images, cat_ids)
        if aid in ann_ids:
            raise DataFormatError(path, "duplicate annotation id", field="id",
                                  record=f"annotation id {aid} of image id {im.id}")
        ann_ids.add(aid)
        im.annotations.append(DetectionAnnotation(aid, im.id, cid, bbox, area, crowd, segm))
    return DetectionDataset(path, image_dir, categories, list(images.values()))
