"""A sources file: one's own datasets named file by file (``--data my_sources.json``).

The standard data root (``docs/DATA_LAYOUT.md``) fixes where each dataset lives; a lab training
on its own data points at its files instead, with a JSON file (``docs/CUSTOM_DATA.md``)::

    {
      "panoptic":  {"annotations": "panoptic_train.json", "images": "train", "pngs": "panoptic_train"},
      "detection": {"annotations": "boxes_train.json", "images": "boxes"},
      "captions":  [{"annotations": "captions_train.json", "images": "train", "name": "my_captions"}],
      "val":       {"annotations": "panoptic_val.json", "images": "val", "pngs": "panoptic_val"}
    }

Every section is optional (a run needs the ones of the tasks its recipe trains, which the
pre-flight check names); the formats are COCO panoptic (``panoptic``, ``val``), COCO detection
with boxes only (``detection``: the pseudo-mask job makes its masks) and COCO captions. Relative
paths are taken from the folder of the sources file; absolute paths and object-store URIs
(``s3://``) are used as they are. The file is data: it is parsed as JSON, nothing in it runs.
"""

from __future__ import annotations

import difflib
import json
import os
from typing import Any

from pipelines.common.storage import locate

SECTIONS: dict[str, tuple[str, ...]] = {  # section -> its keys (all required)
    "panoptic": ("annotations", "images", "pngs"),
    "detection": ("annotations", "images"),
    "captions": ("annotations", "images", "name"),
    "val": ("annotations", "images", "pngs"),
}


class SourcesFileError(ValueError):
    """A sources file that cannot be used; the message names the file and the entry."""


def is_sources_file(data: str) -> bool:
    """``--data`` names a sources file (a ``.json`` file) rather than a data root (a folder)."""
    return data.lower().endswith(".json") and locate(data).is_file()


def read_sources_file(path: str) -> dict[str, Any]:
    """The files a sources file names, as the keyword arguments of
    :class:`pipelines.train.sources.TrainingSources` (``captions``: a list of ``{json, images, name}``);
    ``TrainingSources.from_data`` builds the sources from them.

    Args:
        path: the sources file (local path or URI).

    Raises:
        SourcesFileError: not JSON, an unknown section or key (with the closest known one), a
            missing key, a value that is not a non-empty string, or two caption sources of one name.
    """
    loc = locate(path)
    try:
        spec = json.loads(loc.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourcesFileError(f"{path}: not a readable JSON sources file ({exc})") from exc
    if not isinstance(spec, dict) or not spec:
        raise SourcesFileError(f"{path}: expected a JSON object with some of the sections {', '.join(SECTIONS)}")
    base = loc.uri.rsplit("/", 1)[0] if "://" in loc.uri else os.path.dirname(os.path.abspath(path))
    for section in spec:
        if section not in SECTIONS:
            raise SourcesFileError(f"{path}: unknown section {section!r}{_closest(section, SECTIONS)}; "
                                   f"the sections are {', '.join(SECTIONS)}")

    def entry(section: str, value: Any, where: str) -> dict[str, str]:
        if not isinstance(value, dict):
            raise SourcesFileError(f"{path}: {where} must be an object with {', '.join(SECTIONS[section])}")
        for key in value:
            if key not in SECTIONS[section]:
                raise SourcesFileError(f"{path}: {where}: unknown key {key!r}{_closest(key, SECTIONS[section])}; "
                                       f"the keys are {', '.join(SECTIONS[section])}")
        out = {}
        for key in SECTIONS[section]:
            v = value.get(key)
            if not isinstance(v, str) or not v.strip():
                raise SourcesFileError(f"{path}: {where}.{key} is missing or not a non-empty string")
            out[key] = v if key == "name" else _join(base, v)
        return out

    src: dict[str, Any] = {"captions": []}
    if "panoptic" in spec:
        e = entry("panoptic", spec["panoptic"], "panoptic")
        src.update(panoptic_json=e["annotations"], panoptic_images=e["images"], panoptic_png_dir=e["pngs"])
    if "detection" in spec:
        e = entry("detection", spec["detection"], "detection")
        src.update(detection_json=e["annotations"], detection_images=e["images"])
    if "val" in spec:
        e = entry("val", spec["val"], "val")
        src.update(val_json=e["annotations"], val_images=e["images"], val_png_dir=e["pngs"])
    captions = spec.get("captions", [])
    if not isinstance(captions, list):
        raise SourcesFileError(f"{path}: captions must be a list of {{annotations, images, name}} objects")
    for k, c in enumerate(captions):
        e = entry("captions", c, f"captions[{k}]")
        if any(s["name"] == e["name"] for s in src["captions"]):
            raise SourcesFileError(f"{path}: captions[{k}].name {e['name']!r} is used twice")
        src["captions"].append({"json": e["annotations"], "images": e["images"], "name": e["name"]})
    return src


def _join(base: str, value: str) -> str:
    """``value`` as given when absolute or a URI, else under the sources file's folder."""
    if "://" in value or os.path.isabs(value):
        return value
    return f"{base}/{value}" if "://" in base else os.path.normpath(os.path.join(base, value))


def _closest(word: str, choices: Any) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""
