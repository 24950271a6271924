"""Shared pieces of the dataset readers: JSON loading, field checks, category records.

Every check raises :class:`~vloss.data.errors.DataFormatError` naming the file, the
record (``"image id 42"``, ``"annotation id 7"``) and the field. The checks are plain
dict/list operations so that readers stay fast on files with 100k+ records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vloss.data.errors import DataFormatError

INT = (int,)
NUMBER = (int, float)
ID = (int, str)   # COCO uses int ids; the ADE20K panoptic conversion uses string image ids


def load_json_object(path: str | Path) -> dict:
    """Load a JSON file whose top level is an object.

    Args:
        path: the JSON file.

    Raises:
        FileNotFoundError: the file does not exist.
        DataFormatError: the file is not valid JSON or its top level is not an object.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise DataFormatError(path, f"not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from e
    except UnicodeDecodeError as e:
        raise DataFormatError(path, f"not valid UTF-8 JSON: {e}") from e
    if not isinstance(data, dict):
        raise DataFormatError(path, f"top level must be a JSON object, got {type(data).__name__}")
    return data


def _type_name(kinds: tuple) -> str:
    names = {int: "integer", float: "number", str: "string", list: "list", dict: "object", bool: "boolean"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def get_field(obj: Any, key: str, kinds: tuple, path: Path, record: str | None = None,
              *, optional: bool = False, default: Any = None) -> Any:
    """``obj[key]`` checked against ``kinds`` (booleans never count as numbers).

    Args:
        obj: the JSON object (dict) holding the field.
        key: field name.
        kinds: accepted Python types.
        path: the file, for the error message.
        record: e.g. ``"image id 42"``.
        optional: return ``default`` when the field is absent (or null).
        default: value for an absent optional field.
    """
    if not isinstance(obj, dict):
        raise DataFormatError(path, f"expected an object, got {type(obj).__name__}", record=record)
    if key not in obj or obj[key] is None:
        if optional:
            return default
        raise DataFormatError(path, "required field is missing", field=key, record=record)
    value = obj[key]
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        raise DataFormatError(path, f"expected {_type_name(kinds)}, got {type(value).__name__} "
                                    f"{_short(value)}", field=key, record=record)
    return value


def get_list(data: dict, key: str, path: Path, record: str | None = None) -> list:
    """A required list field (e.g. top-level ``images``)."""
    return get_field(data, key, (list,), path, record)


def check_bbox(value: Any, path: Path, record: str, key: str = "bbox") -> list:
    """A COCO ``[x, y, w, h]`` with numeric entries and positive width and height."""
    if not isinstance(value, list) or len(value) != 4:
        raise DataFormatError(path, f"expected [x, y, w, h], got {_short(value)}", field=key, record=record)
    for v in value:
        if isinstance(v, bool) or not isinstance(v, NUMBER):
            raise DataFormatError(path, f"box entries must be numbers, got {_short(value)}",
                                  field=key, record=record)
    if not (value[2] > 0 and value[3] > 0):
        raise DataFormatError(path, f"box width and height must be positive, got {value}",
                              field=key, record=record)
    return value


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


@dataclass(frozen=True, slots=True)
class Category:
    """A COCO-style category.

    Args:
        id: category id (its dataset's own id space; ADE20K starts at 0).
        name: class name.
        supercategory: supercategory name ("" when absent).
        isthing: True for things, False for stuff, None when the format has no such field
            (detection files).
        color: display RGB, or None.
    """

    id: int
    name: str
    supercategory: str
    isthing: bool | None
    color: tuple[int, int, int] | None


def read_categories(data: dict, path: Path, *, require_isthing: bool) -> list[Category]:
    """Parse the top-level ``categories`` list (unique integer ids, string names).

    Args:
        data: the loaded JSON object.
        path: the file, for error messages.
        require_isthing: panoptic files must say for every category whether it is a thing.
    """
    cats: list[Category] = []
    seen: set[int] = set()
    for k, c in enumerate(get_list(data, "categories", path)):
        where = f"categories[{k}]"
        cid = get_field(c, "id", INT, path, where)
        where = f"category id {cid}"
        if cid in seen:
            raise DataFormatError(path, "duplicate category id", field="id", record=where)
        seen.add(cid)
        name = get_field(c, "name", (str,), path, where)
        isthing = get_field(c, "isthing", INT, path, where, optional=not require_isthing)
        color = get_field(c, "color", (list,), path, where, optional=True)
        cats.append(Category(cid, name, get_field(c, "supercategory", (str,), path, where,
                                                   optional=True, default=""),
                             None if isthing is None else bool(isthing),
                             None if color is None else tuple(int(v) for v in color)))
    return cats


def unknown_category(path: Path, record: str, cid: Any, key: str = "category_id") -> DataFormatError:
    """The error for an annotation naming a category the file does not define."""
    return DataFormatError(path, f"category id {cid!r} is not in 'categories'", field=key, record=record)


def unknown_image(path: Path, record: str, image_id: Any) -> DataFormatError:
    """The error for an annotation naming an image the file does not define."""
    return DataFormatError(path, f"image id {image_id!r} is not in 'images'", field="image_id", record=record)


def read_image_header(img: Any, k: int, path: Path, seen: set) -> tuple[Any, str]:
    """Check an ``images`` entry's id (unique) and return (id, record label)."""
    image_id = get_field(img, "id", ID, path, f"images[{k}]")
    where = f"image id {image_id}"
    if image_id in seen:
        raise DataFormatError(path, "duplicate image id", field="id", record=where)
    seen.add(image_id)
    return image_id, where


def image_size(img: dict, path: Path, where: str, *, optional: bool = False) -> tuple[int | None, int | None]:
    """``(height, width)`` of an image entry, both positive integers."""
    h = get_field(img, "height", INT, path, where, optional=optional)
    w = get_field(img, "width", INT, path, where, optional=optional)
    for key, v in (("height", h), ("width", w)):
        if v is not None and v <= 0:
            raise DataFormatError(path, f"must be positive, got {v}", field=key, record=where)
    return h, w


def check_relative_name(name: str, path: Path | str, record: str | None = None, field: str = "file_name") -> str:
    """A file name from an annotation file, checked to stay under the folder it is relative to.

    Annotation files name images relative to a root the user gives (``--images``); a name that is
    absolute or climbs out with ``..`` would read (or, for outputs, write) outside that root.

    Args:
        name: the name as in the file.
        path: the annotation file, for the error message.
        record: e.g. ``"image id 42"``.
        field: the field the name came from.

    Returns:
        ``name`` unchanged.

    Raises:
        DataFormatError: an empty, absolute (``/x``, ``C:\\x``, ``s3://...``) or ``..``-climbing name.
    """
    parts = name.replace("\\", "/").split("/")
    absolute = name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or "://" in name
    if not name.strip() or absolute or ".." in parts:
        raise DataFormatError(path, f"{name!r} is not a path inside the image folder (absolute or with '..')",
                              field=field, record=record)
    return name
