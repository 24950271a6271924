"""COCO captions files: images, each with a list of caption strings."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterator

from vloss.data.errors import DataFormatError
from vloss.data.records import (
    ID,
    check_relative_name,
    get_field,
    get_list,
    image_size,
    load_json_object,
    read_image_header,
    unknown_image,
)

_WORD = re.compile(r"[a-z]+")


@dataclass(slots=True)
class CaptionImage:
    """One image and its captions.

    Args:
        id: image id.
        file_name: as in the file.
        path: ``image_dir / file_name``.
        height, width: image size, or None when the file omits it.
        captions: caption strings in file order.
        caption_ids: annotation ids of the captions, aligned with ``captions``.
    """

    id: int | str
    file_name: str
    path: Path
    height: int | None
    width: int | None
    captions: list[str] = field(default_factory=list)
    caption_ids: list[int | str] = field(default_factory=list)


@dataclass
class CaptionDataset:
    """A parsed COCO captions file.

    Args:
        json_path: the annotation file.
        image_dir: directory the ``file_name`` entries are relative to.
        images: images in file order (including any without captions).
    """

    json_path: Path
    image_dir: Path
    images: list[CaptionImage]

    @cached_property
    def images_by_id(self) -> dict[int | str, CaptionImage]:
        return {im.id: im for im in self.images}

    @property
    def num_captions(self) -> int:
        return sum(len(im.captions) for im in self.images)

    def pairs(self) -> Iterator[tuple[CaptionImage, str]]:
        """Every (image, caption) pair."""
        for im in self.images:
            for c in im.captions:
                yield im, c

    def words(self) -> set[str]:
        """The lower-case words used in all captions."""
        out: set[str] = set()
        for _, c in self.pairs():
            out.update(_WORD.findall(c.lower()))
        return out

    def mentions(self, phrase: str) -> list[CaptionImage]:
        """Images with a caption containing ``phrase`` as whole words (case-insensitive).

        A shape word also matches its plural ("red star" matches "two red stars").
        """
        words = phrase.lower().split()
        tail = re.escape(words[-1]) + r"(?:e?s)?"
        pattern = re.compile(r"\b" + r"\s+".join([re.escape(w) for w in words[:-1]] + [tail]) + r"\b")
        return [im for im in self.images if any(pattern.search(c.lower()) for c in im.captions)]

    def __len__(self) -> int:
        return len(self.images)


def read_coco_captions(json_path: str | Path, image_dir: str | Path) -> CaptionDataset:
    """Read and validate a COCO captions JSON.

    Args:
        json_path: e.g. ``annotations/captions_train2017.json``.
        image_dir: directory holding the images.

    Raises:
        DataFormatError: naming file, record and field: bad JSON, missing keys, wrong
            types, duplicate ids, captions for unknown images, empty captions.
    """
    path = Path(json_path)
    image_dir = Path(image_dir)
    data = load_json_object(path)
    images: dict = {}
    seen: set = set()
    for k, img in enumerate(get_list(data, "images", path)):
        image_id, where = read_image_header(img, k, path, seen)
        file_name = check_relative_name(get_field(img, "file_name", (str,), path, where), path, where)
        h, w = image_size(img, path, where, optional=True)
        images[image_id] = CaptionImage(image_id, file_name, image_dir / file_name, h, w)
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
        caption = get_field(a, "caption", (str,), path, where)
        if not caption.strip():
            raise DataFormatError(path, "caption is empty", field="caption", record=where)
        images[image_id].captions.append(caption)
        images[image_id].caption_ids.append(aid)
    return CaptionDataset(path, image_dir, list(images.values()))
