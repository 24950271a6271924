"""Validated box input for the pseudo-mask teacher.

Parses a COCO-format detection JSON (already loaded into a dict, so the caller may
read it from a local disk or an object store) into per-image box lists, and does
the checks the pseudo-mask job needs *before* any work is scheduled:

* malformed structure, duplicate ids, unknown image / category ids,
  non-finite or non-positive box sizes -> ``DataFormatError`` naming file,
  record and field;
* boxes partly outside their image are clipped to it and counted;
* boxes entirely outside their image -> ``DataFormatError`` naming the annotation.

Boxes are COCO ``[x, y, w, h]`` in pixels; ``xyxy`` gives ``[x0, y0, x1, y1]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from vloss.data.errors import DataFormatError
from vloss.data.records import check_relative_name


@dataclass(frozen=True)
class BoxInstance:
    """One given box.

    Args:
        ann_id: annotation id from the JSON.
        category_id: category id from the JSON.
        bbox: COCO ``[x, y, w, h]`` after clipping to the image.
        clipped: whether clipping changed the box.
    """

    ann_id: int
    category_id: int
    bbox: tuple[float, float, float, float]
    clipped: bool = False

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        x, y, w, h = self.bbox
        return (x, y, x + w, y + h)


@dataclass
class ImageBoxes:
    """An image and its given boxes (sorted by annotation id).

    Args:
        image_id: image id from the JSON.
        file_name: path relative to the image root.
        height: image height in pixels, as the JSON states it.
        width: image width in pixels.
        instances: the boxes on this image.
    """

    image_id: int
    file_name: str
    height: int
    width: int
    instances: list[BoxInstance] = field(default_factory=list)


@dataclass
class DetectionInput:
    """Everything the job needs from a detection JSON.

    Args:
        source: the file the JSON came from (for messages and the manifest).
        categories: the JSON's category records, unchanged.
        images: images that carry at least one box, sorted by image id.
        num_images_total: images listed in the JSON.
        num_boxes: boxes over all images.
        num_clipped: boxes that were partly outside their image and got clipped.
    """

    source: str
    categories: list[dict]
    images: list[ImageBoxes]
    num_images_total: int
    num_boxes: int
    num_clipped: int

    @property
    def num_images_without_boxes(self) -> int:
        return self.num_images_total - len(self.images)


def _int_field(path: str, rec: dict, key: str, record: str, *, positive: bool = False) -> int:
    value = rec.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise DataFormatError(path, f"expected an integer, got {value!r}", field=key, record=record)
    if positive and value <= 0:
        raise DataFormatError(path, f"must be positive, got {value}", field=key, record=record)
    return value


def _list_field(path: str, data: dict, key: str) -> list:
    value = data.get(key)
    if not isinstance(value, list):
        raise DataFormatError(path, f"expected a list at the top level, got {type(value).__name__}", field=key)
    return value


def clip_box(bbox: tuple[float, float, float, float], width: int, height: int
             ) -> tuple[tuple[float, float, float, float], bool]:
    """Clip a COCO ``[x, y, w, h]`` box to ``[0, width] x [0, height]``.

    Returns:
        ``(clipped_box, changed)``; ``clipped_box`` has zero width or height when the
        box lies entirely outside the image.
    """
    x, y, w, h = bbox
    x0, y0 = min(max(x, 0.0), float(width)), min(max(y, 0.0), float(height))
    x1, y1 = min(max(x + w, 0.0), float(width)), min(max(y + h, 0.0), float(height))
    out = (x0, y0, x1 - x0, y1 - y0)
    return out, out != (float(x), float(y), float(w), float(h))


def parse_detection_input(data: Any, source: str) -> DetectionInput:
    """Validate a COCO detection dict and group its boxes by image.

    Args:
        data: the parsed JSON.
        source: file name used in error messages.
    Returns:
        a ``DetectionInput`` with images sorted by id and boxes by annotation id.
    Raises:
        DataFormatError: on any malformed record (names file, record and field).
    """
    if not isinstance(data, dict):
        raise DataFormatError(source, f"expected a JSON object at the top level, got {type(data).__name__}")
    images_raw = _list_field(source, data, "images")
    anns_raw = _list_field(source, data, "annotations")
    cats_raw = _list_field(source, data, "categories")

    category_ids: set[int] = set()
    for i, cat in enumerate(cats_raw):
        if not isinstance(cat, dict):
            raise DataFormatError(source, "expected an object", field="categories", record=f"categories[{i}]")
        cid = _int_field(source, cat, "id", f"categories[{i}]")
        if cid in category_ids:
            raise DataFormatError(source, f"duplicate category id {cid}", field="id", record=f"category id {cid}")
        category_ids.add(cid)

    images: dict[int, ImageBoxes] = {}
    for i, img in enumerate(images_raw):
        if not isinstance(img, dict):
            raise DataFormatError(source, "expected an object", field="images", record=f"images[{i}]")
        iid = _int_field(source, img, "id", f"images[{i}]")
        rec = f"image id {iid}"
        if iid in images:
            raise DataFormatError(source, f"duplicate image id {iid}", field="id", record=rec)
        name = img.get("file_name")
        if not isinstance(name, str) or not name:
            raise DataFormatError(source, f"expected a non-empty string, got {name!r}", field="file_name", record=rec)
        check_relative_name(name, source, rec)
        images[iid] = ImageBoxes(iid, name, _int_field(source, img, "height", rec, positive=True),
                                 _int_field(source, img, "width", rec, positive=True))

    seen_ann: set[int] = set()
    num_clipped = 0
    for i, ann in enumerate(anns_raw):
        if not isinstance(ann, dict):
            raise DataFormatError(source, "expected an object", field="annotations", record=f"annotations[{i}]")
        aid = _int_field(source, ann, "id", f"annotations[{i}]")
        rec = f"annotation id {aid}"
        if aid in seen_ann:
            raise DataFormatError(source, f"duplicate annotation id {aid}", field="id", record=rec)
        seen_ann.add(aid)
        iid = _int_field(source, ann, "image_id", rec)
        if iid not in images:
            raise DataFormatError(source, f"unknown image id {iid}", field="image_id", record=rec)
        cid = _int_field(source, ann, "category_id", rec)
        if cid not in category_ids:
            raise DataFormatError(source, f"unknown category id {cid}", field="category_id", record=rec)
        bbox = ann.get("bbox")
        if (not isinstance(bbox, (list, tuple)) or len(bbox) != 4
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                           for v in bbox)):
            raise DataFormatError(source, f"expected 4 finite numbers [x, y, w, h], got {bbox!r}",
                                  field="bbox", record=rec)
        x, y, w, h = (float(v) for v in bbox)
        if w <= 0 or h <= 0:
            raise DataFormatError(source, f"box has non-positive size (w={w}, h={h})", field="bbox", record=rec)
        image = images[iid]
        clipped, changed = clip_box((x, y, w, h), image.width, image.height)
        if clipped[2] <= 0 or clipped[3] <= 0:
            raise DataFormatError(
                source, f"box {[x, y, w, h]} lies entirely outside image {iid} "
                f"({image.width}x{image.height})", field="bbox", record=rec)
        num_clipped += int(changed)
        image.instances.append(BoxInstance(aid, cid, clipped, changed))

    with_boxes = []
    for iid in sorted(images):
        image = images[iid]
        if image.instances:
            image.instances.sort(key=lambda b: b.ann_id)
            with_boxes.append(image)
    return DetectionInput(source=source, categories=[dict(c) for c in cats_raw], images=with_boxes,
                          num_images_total=len(images), num_boxes=len(seen_ann), num_clipped=num_clipped)
