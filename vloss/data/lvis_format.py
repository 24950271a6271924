"""LVIS files (v0.5 and v1): large-vocabulary instance annotations with r/c/f frequencies.

(Named ``lvis_format`` so that it never shadows the ``lvis`` API package.)

Image files. LVIS v1 images carry no ``file_name``, only ``coco_url``
(``http://images.cocodataset.org/val2017/000000000139.jpg``); v0.5 images carry a
``file_name``. :func:`resolve_lvis_image_path` applies this rule:

1. ``file_name`` present -> ``image_dir / file_name``;
2. otherwise the last two parts of ``coco_url`` (``val2017/000000000139.jpg``):
   if ``image_dir`` is itself that folder (its name is ``val2017``) the file is
   ``image_dir / 000000000139.jpg`` (i.e. relative to image_dir's parent), else it is
   ``image_dir / val2017 / 000000000139.jpg`` (image_dir is the COCO root).

No file system lookups are made; the rule is a pure function of the record.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from vloss.data.errors import DataFormatError
from vloss.data.records import (
    ID,
    INT,
    NUMBER,
    check_bbox,
    check_relative_name,
    get_field,
    get_list,
    image_size,
    load_json_object,
    read_image_header,
    unknown_category,
    unknown_image,
)

FREQUENCIES = ("r", "c", "f")


@dataclass(frozen=True, slots=True)
class LvisCategory:
    """An LVIS category.

    Args:
        id: category id (1-based in LVIS).
        name: LVIS name, underscores for spaces ("baseball_bat").
        synonyms: synonym names.
        definition: the ``def`` gloss.
        frequency: "r", "c" or "f".
        image_count: number of training images containing it.
        instance_count: number of training instances.
        synset: WordNet-style synset, or None.
    """

    id: int
    name: str
    synonyms: tuple[str, ...]
    definition: str
    frequency: str
    image_count: int
    instance_count: int
    synset: str | None = None

    @property
    def display_name(self) -> str:
        """The name with spaces ("baseball bat"), as a text prompt wants it."""
        return self.name.replace("_", " ")


@dataclass(slots=True)
class LvisAnnotation:
    """One instance.

    Args:
        id: annotation id.
        image_id: its image.
        category_id: its category.
        bbox: ``[x, y, w, h]``.
        area: mask area.
        segmentation: polygons or RLE, as in the file.
    """

    id: int
    image_id: int | str
    category_id: int
    bbox: list[float]
    area: float
    segmentation: Any


@dataclass(slots=True)
class LvisImage:
    """One LVIS image.

    Args:
        id: image id.
        path: resolved image file (see the module docstring).
        height, width: image size.
        coco_url: as in the file, or None.
        file_name: as in the file (v0.5), or None (v1).
        neg_category_ids: categories verified absent.
        not_exhaustive_category_ids: categories present but not exhaustively annotated.
        annotations: its instances.
    """

    id: int | str
    path: Path
    height: int
    width: int
    coco_url: str | None
    file_name: str | None
    neg_category_ids: list[int]
    not_exhaustive_category_ids: list[int]
    annotations: list[LvisAnnotation] = field(default_factory=list)


@dataclass
class LvisDataset:
    """A parsed LVIS file.

    Args:
        json_path: the annotation file.
        image_dir: the directory image paths were resolved against.
        categories: categories in file order.
        images: images in file order.
    """

    json_path: Path
    image_dir: Path
    categories: list[LvisCategory]
    images: list[LvisImage]

    @cached_property
    def categories_by_id(self) -> dict[int, LvisCategory]:
        return {c.id: c for c in self.categories}

    @cached_property
    def images_by_id(self) -> dict[int | str, LvisImage]:
        return {im.id: im for im in self.images}

    @property
    def vocabulary(self) -> list[str]:
        """Display names (underscores -> spaces), in category order."""
        return [c.display_name for c in self.categories]

    def frequency_counts(self) -> dict[str, int]:
        """Number of categories per frequency: ``{"r": .., "c": .., "f": ..}``."""
        counts = Counter(c.frequency for c in self.categories)
        return {f: counts.get(f, 0) for f in FREQUENCIES}

    def category_ids(self, frequency: str) -> list[int]:
        """Ids of the categories of one frequency group."""
        return [c.id for c in self.categories if c.frequency == frequency]

    @property
    def num_annotations(self) -> int:
        return sum(len(im.annotations) for im in self.images)

    def annotations(self) -> Iterator[LvisAnnotation]:
        for im in self.images:
            yield from im.annotations

    def __len__(self) -> int:
        return len(self.images)


def resolve_lvis_image_path(file_name: str | None, coco_url: str | None, image_dir: str | Path,
                            *, json_path: Path | None = None, record: str | None = None) -> Path:
    """The image file of an LVIS image record (rule in the module docstring).

    Args:
        file_name: the record's ``file_name`` or None.
        coco_url: the record's ``coco_url`` or None.
        image_dir: the image folder (``.../val2017``) or the COCO root above it.
        json_path, record: for the error message when neither field is usable.
    """
    image_dir = Path(image_dir)
    if file_name:
        return image_dir / check_relative_name(file_name, json_path or "<lvis>", record)
    parts = PurePosixPath(coco_url or "").parts
    if len(parts) < 2:
        raise DataFormatError(json_path or "<lvis>", "needs 'file_name' or a 'coco_url' ending in "
                              "<split>/<file>.jpg", field="coco_url", record=record)
    split, name = parts[-2], parts[-1]
    check_relative_name(f"{split}/{name}", json_path or "<lvis>", record, field="coco_url")
    if image_dir.name == split:
        return image_dir / name
    return image_dir / split / name


def _id_list(img: dict, key: str, path: Path, where: str, cat_ids: set) -> list[int]:
    values = get_field(img, key, (list,), path, where)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int):
            raise DataFormatError(path, f"expected category ids, got {v!r}", field=key, record=where)
        if v not in cat_ids:
            raise unknown_category(path, where, v, key)
    return list(values)


def read_lvis(json_path: str | Path, image_dir: str | Path) -> LvisDataset:
    """Read and validate an LVIS JSON (v0.5 or v1).

    Args:
        json_path: e.g. ``lvis/lvis_v1_val.json``.
        image_dir: the image folder or the COCO root (see the module docstring).

    Raises:
        DataFormatError: naming file, record and field: bad JSON, missing keys, wrong
            types, frequency outside r/c/f, duplicate ids, unknown image or category ids
            (also in ``neg_category_ids`` / ``not_exhaustive_category_ids``), non-positive boxes.
    """
    path = Path(json_path)
    image_dir = Path(image_dir)
    data = load_json_object(path)

    categories: list[LvisCategory] = []
    cat_ids: set[int] = set()
    for k, c in enumerate(get_list(data, "categories", path)):
        cid = get_field(c, "id", INT, path, f"categories[{k}]")
        where = f"category id {cid}"
        if cid in cat_ids:
            raise DataFormatError(path, "duplicate category id", field="id", record=where)
        cat_ids.add(cid)
        freq = get_field(c, "frequency", (str,), path, where)
        if freq not in FREQUENCIES:
            raise DataFormatError(path, f"must be one of r/c/f, got {freq!r}", field="frequency", record=where)
        synonyms = get_field(c, "synonyms", (list,), path, where, optional=True, default=[])
        categories.append(LvisCategory(
            cid, get_field(c, "name", (str,), path, where), tuple(str(s) for s in synonyms),
            get_field(c, "def", (str,), path, where, optional=True, default=""), freq,
            get_field(c, "image_count", INT, path, where, optional=True, default=0),
            get_field(c, "instance_count", INT, path, where, optional=True, default=0),
            get_field(c, "synset", (str,), path, where, optional=True)))

    images: dict = {}
    seen: set = set()
    for k, img in enumerate(get_list(data, "images", path)):
        image_id, where = read_image_header(img, k, path, seen)
        h, w = image_size(img, path, where)
        file_name = get_field(img, "file_name", (str,), path, where, optional=True)
        coco_url = get_field(img, "coco_url", (str,), path, where, optional=True)
        images[image_id] = LvisImage(
            image_id, resolve_lvis_image_path(file_name, coco_url, image_dir, json_path=path, record=where),
            h, w, coco_url, file_name,
            _id_list(img, "neg_category_ids", path, where, cat_ids),
            _id_list(img, "not_exhaustive_category_ids", path, where, cat_ids))

    ann_ids: set = set()
    for k, a in enumerate(get_list(data, "annotations", path)):
        aid = get_field(a, "id", ID, path, f"annotations[{k}]")
        where = f"annotation id {aid}"
        if aid in ann_ids:
            raise DataFormatError(path, "duplicate annotation id", field="id", record=where)
        ann_ids.add(aid)
        image_id = get_field(a, "image_id", ID, path, where)
        where = f"annotation id {aid} of image id {image_id}"
        if image_id not in images:
            raise unknown_image(path, where, image_id)
        cid = get_field(a, "category_id", INT, path, where)
        if cid not in cat_ids:
            raise unknown_category(path, where, cid)
        bbox = check_bbox(get_field(a, "bbox", (list,), path, where), path, where)
        area = get_field(a, "area", NUMBER, path, where)
        segm = get_field(a, "segmentation", (list, dict), path, where)
        images[image_id].annotations.append(LvisAnnotation(aid, image_id, cid, bbox, area, segm))
    return LvisDataset(path, image_dir, categories, list(images.values()))
