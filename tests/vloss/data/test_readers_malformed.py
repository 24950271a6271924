"""Malformed inputs: every reader names the file, the record and the field."""

from __future__ import annotations

import copy
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from vloss.data.coco_captions import read_coco_captions
from vloss.data.coco_detection import read_coco_detection
from vloss.data.coco_panoptic import check_panoptic_png, read_coco_panoptic
from vloss.data.errors import DataFormatError
from vloss.data.lvis_format import read_lvis


def _write(tmp_path: Path, data: dict, name: str) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _expect(call, path: Path, field: str | None, record: str | None) -> DataFormatError:
    with pytest.raises(DataFormatError) as info:
        call()
    err = info.value
    assert err.path == str(path) and path.name in str(err)
    assert err.field == field, str(err)
    if field is not None:
        assert f"'{field}'" in str(err)
    if record is not None:
        assert record in str(err), str(err)
    return err


@pytest.fixture(scope="module")
def detection_base(shared_data) -> dict:
    with open(shared_data / "coco-panoptic-sample" / "panoptic_coco_detection_format.json") as f:
        return json.load(f)


def _first(data: dict) -> dict:
    return data["annotations"][0]


DETECTION_CASES = {
    # name: (mutation, field, record fragment)
    "missing annotations": (lambda d: d.pop("annotations"), "annotations", None),
    "missing bbox": (lambda d: _first(d).pop("bbox"), "bbox", "annotation id 0"),
    "category id as string": (lambda d: _first(d).update(category_id="1"), "category_id", "annotation id 0"),
    "unknown category": (lambda d: _first(d).update(category_id=9999), "category_id",
                         "annotation id 0 of image id 142238"),
    "zero width": (lambda d: _first(d)["bbox"].__setitem__(2, 0), "bbox", "annotation id 0 of image id 142238"),
    "negative height": (lambda d: _first(d)["bbox"].__setitem__(3, -4.0), "bbox", "annotation id 0"),
    "unknown image": (lambda d: _first(d).update(image_id=1), "image_id", "annotation id 0"),
    "duplicate annotation id": (lambda d: d["annotations"][1].update(id=0), "id", "annotation id 0"),
    "image without file_name": (lambda d: d["images"][0].pop("file_name"), "file_name", "image id 142238"),
    "bool iscrowd": (lambda d: _first(d).update(iscrowd=True), "iscrowd", "annotation id 0"),
    "annotation not an object": (lambda d: d["annotations"].__setitem__(0, [1, 2]), None, "annotations[0]"),
}


@pytest.mark.parametrize("case", sorted(DETECTION_CASES))
def test_detection_reader_rejects(tmp_path, detection_base, case):
    mutate, field, record = DETECTION_CASES[case]
    data = copy.deepcopy(detection_base)
    mutate(data)
    path = _write(tmp_path, data, "instances.json")
    _expect(lambda: read_coco_detection(path, tmp_path), path, field, record)


def test_every_reader_rejects_bad_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"images": [')
    for call in (lambda: read_coco_detection(path, tmp_path), lambda: read_coco_captions(path, tmp_path),
                 lambda: read_lvis(path, tmp_path), lambda: read_coco_panoptic(path, tmp_path, tmp_path)):
        err = _expect(call, path, None, None)
        assert "not valid JSON" in str(err)
    path.write_text("[1, 2]")
    assert "top level" in str(_expect(lambda: read_lvis(path, tmp_path), path, None, None))


# ----------------------------------------------------------------------------- panoptic

@pytest.fixture()
def panoptic_copy(tmp_path, shared_data):
    src = shared_data / "coco-panoptic-sample"
    with open(src / "panoptic_examples.json") as f:
        data = json.load(f)
    return data, src


def _seg(data: dict, k: int = 0) -> dict:
    return data["annotations"][0]["segments_info"][k]


PANOPTIC_CASES = {
    "unknown category": (lambda d: _seg(d).update(category_id=4242), "category_id",
                         "image id 142238 segment id 3937500"),
    "zero-height box": (lambda d: _seg(d)["bbox"].__setitem__(3, 0), "bbox", "segment id 3937500"),
    "missing isthing": (lambda d: d["categories"][0].pop("isthing"), "isthing", "category id 1"),
    "annotation for unknown image": (lambda d: d["annotations"][0].update(image_id=7), "image_id", None),
    "image without annotation": (lambda d: d["annotations"].pop(0), "annotations", "image id 142238"),
    "area as string": (lambda d: _seg(d).update(area="3528"), "area", "segment id 3937500"),
    "duplicate segment id": (lambda d: _seg(d, 1).update(id=_seg(d)["id"]), "id", "image id 142238"),
}


@pytest.mark.parametrize("case", sorted(PANOPTIC_CASES))
def test_panoptic_reader_rejects(tmp_path, panoptic_copy, case):
    data, src = panoptic_copy
    mutate, field, record = PANOPTIC_CASES[case]
    mutate(data)
    path = _write(tmp_path, data, "panoptic.json")
    _expect(lambda: read_coco_panoptic(path, src / "input_images", src / "panoptic_examples"),
            path, field, record)


def test_panoptic_png_and_json_must_agree(tmp_path, panoptic_copy):
    data, src = panoptic_copy
    png_dir = src / "panoptic_examples"
    png = (png_dir / data["annotations"][0]["file_name"]).resolve()
    # A segment listed in the JSON but absent from the PNG.
    extra = copy.deepcopy(data)
    extra["annotations"][0]["segments_info"].append(dict(_seg(data), id=123))
    path = _write(tmp_path, extra, "extra.json")
    ds = read_coco_panoptic(path, src / "input_images", png_dir)   # JSON alone is consistent
    err = _expect(lambda: check_panoptic_png(ds.images[0]), png, "segments_info", "image id 142238")
    assert "123" in str(err) and "missing from the PNG" in str(err)
    _expect(lambda: read_coco_panoptic(path, src / "input_images", png_dir, check_pngs=True),
            png, "segments_info", "image id 142238")
    # A PNG segment the JSON forgot.
    fewer = copy.deepcopy(data)
    dropped = fewer["annotations"][0]["segments_info"].pop(2)
    path = _write(tmp_path, fewer, "fewer.json")
    err = _expect(lambda: read_coco_panoptic(path, src / "input_images", png_dir, check_pngs=True),
                  png, "segments_info", "image id 142238")
    assert str(dropped["id"]) in str(err) and "not listed" in str(err)
    # A PNG of the wrong size.
    small = copy.deepcopy(data)
    small["images"][0]["height"] = 100
    path = _write(tmp_path, small, "small.json")
    _expect(lambda: read_coco_panoptic(path, src / "input_images", png_dir, check_pngs=True),
            png, "height/width", "image id 142238")


def test_unreadable_png_is_a_format_error(tmp_path, panoptic_copy):
    data, src = panoptic_copy
    png_dir = tmp_path / "pngs"
    shutil.copytree(src / "panoptic_examples", png_dir)
    bad = png_dir / data["annotations"][0]["file_name"]
    bad.write_bytes(b"not a png")
    path = _write(tmp_path, data, "panoptic.json")
    with pytest.raises(DataFormatError, match=bad.name):
        read_coco_panoptic(path, src / "input_images", png_dir, check_pngs=True)


# ----------------------------------------------------------------------------- captions

CAPTIONS = {
    "images": [{"id": 1, "file_name": "a.jpg", "height": 10, "width": 10},
               {"id": 2, "file_name": "b.jpg"}],
    "annotations": [{"id": 10, "image_id": 1, "caption": "a red ring on grass."},
                    {"id": 11, "image_id": 2, "caption": "two blue stars."}],
}

CAPTION_CASES = {
    "caption not a string": (lambda d: d["annotations"][0].update(caption=["x"]), "caption",
                             "annotation id 10 of image id 1"),
    "empty caption": (lambda d: d["annotations"][1].update(caption="  "), "caption", "annotation id 11"),
    "unknown image": (lambda d: d["annotations"][1].update(image_id=3), "image_id", "annotation id 11"),
    "missing images": (lambda d: d.pop("images"), "images", None),
    "zero width": (lambda d: d["images"][0].update(width=0), "width", "image id 1"),
    "duplicate image id": (lambda d: d["images"][1].update(id=1), "id", "image id 1"),
}


def test_captions_reader_reads_a_valid_file(tmp_path):
    path = _write(tmp_path, CAPTIONS, "captions.json")
    ds = read_coco_captions(path, tmp_path)
    assert [im.captions for im in ds.images] == [["a red ring on grass."], ["two blue stars."]]
    assert ds.images[1].height is None and ds.images_by_id[1].path == tmp_path / "a.jpg"
    assert [im.id for im in ds.mentions("blue star")] == [2] and ds.mentions("red star") == []


@pytest.mark.parametrize("case", sorted(CAPTION_CASES))
def test_captions_reader_rejects(tmp_path, case):
    mutate, field, record = CAPTION_CASES[case]
    data = copy.deepcopy(CAPTIONS)
    mutate(data)
    path = _write(tmp_path, data, "captions.json")
    _expect(lambda: read_coco_captions(path, tmp_path), path, field, record)


# ----------------------------------------------------------------------------- LVIS

@pytest.fixture(scope="module")
def lvis_base(shared_data) -> dict:
    with open(shared_data / "lvis-v0.5-val-100" / "lvis_val_100.json") as f:
        return json.load(f)


LVIS_CASES = {
    "bad frequency": (lambda d: d["categories"][0].update(frequency="x"), "frequency", "category id 1"),
    "unknown negative category": (lambda d: d["images"][0]["neg_category_ids"].append(99999),
                                  "neg_category_ids", "image id 266409"),
    "unknown not-exhaustive category": (lambda d: d["images"][0].update(not_exhaustive_category_ids=[0]),
                                        "not_exhaustive_category_ids", "image id 266409"),
    "unknown annotation category": (lambda d: d["annotations"][0].update(category_id=99999), "category_id",
                                    "annotation id 1 of image id 565853"),
    "missing segmentation": (lambda d: d["annotations"][0].pop("segmentation"), "segmentation",
                             "annotation id 1"),
    "negative box width": (lambda d: d["annotations"][0]["bbox"].__setitem__(2, -1), "bbox", "annotation id 1"),
    "no file_name and no coco_url": (lambda d: [d["images"][0].pop(k) for k in ("file_name", "coco_url")],
                                     "coco_url", "image id 266409"),
    "unknown image": (lambda d: d["annotations"][0].update(image_id=5), "image_id", "annotation id 1"),
}


@pytest.mark.parametrize("case", sorted(LVIS_CASES))
def test_lvis_reader_rejects(tmp_path, lvis_base, case):
    mutate, field, record = LVIS_CASES[case]
    data = copy.deepcopy(lvis_base)
    mutate(data)
    path = _write(tmp_path, data, "lvis.json")
    _expect(lambda: read_lvis(path, tmp_path), path, field, record)


# ----------------------------------------------------------------------------- detection fast path

def _valid_by_reference(anns: list, image_ids: set, cat_ids: set) -> bool:
    """A slow, obvious statement of what read_coco_detection accepts."""
    def is_num(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    def is_id(v):
        return isinstance(v, (int, str)) and not isinstance(v, bool)

    seen = set()
    for a in anns:
        if not isinstance(a, dict) or not all(a.get(k) is not None for k in
                                              ("id", "image_id", "category_id", "bbox", "area")):
            return False
        b = a["bbox"]
        if not (is_id(a["id"]) and is_id(a["image_id"]) and a["image_id"] in image_ids
                and isinstance(a["category_id"], int) and not isinstance(a["category_id"], bool)
                and a["category_id"] in cat_ids and isinstance(b, list) and len(b) == 4
                and all(is_num(v) for v in b) and b[2] > 0 and b[3] > 0
                and is_num(a["area"]) and a["area"] >= 0):
            return False
        crowd, segm = a.get("iscrowd"), a.get("segmentation")
        if crowd is not None and (not isinstance(crowd, int) or isinstance(crowd, bool)):
            return False
        if segm is not None and not isinstance(segm, (list, dict)):
            return False
        if a["id"] in seen:
            return False
        seen.add(a["id"])
    return True


def test_detection_fast_path_accepts_exactly_what_the_reference_accepts(tmp_path, detection_base):
    rng = np.random.default_rng(0)
    keys = ["id", "image_id", "category_id", "bbox", "area", "iscrowd", "segmentation"]
    values = [None, True, "7", 1.5, -3, 0, 1, 142238, 99999, [], [1, 2, 3, 4], [0, 0, 0, 5],
              [0, 0, 5.5, 2], [0, "1", 2, 3], {}, {"counts": "x", "size": [1, 1]}, "DELETE"]
    image_ids = {im["id"] for im in detection_base["images"]}
    cat_ids = {c["id"] for c in detection_base["categories"]}
    outcomes = Counter()
    for trial in range(150):
        data = copy.deepcopy(detection_base)
        data["annotations"] = data["annotations"][:6]
        for _ in range(int(rng.integers(1, 3))):
            a = data["annotations"][int(rng.integers(0, 6))]
            key, value = keys[int(rng.integers(len(keys)))], values[int(rng.integers(len(values)))]
            if value == "DELETE":
                a.pop(key, None)
            else:
                a[key] = copy.deepcopy(value)
        path = _write(tmp_path, data, f"t{trial}.json")
        expected = _valid_by_reference(data["annotations"], image_ids, cat_ids)
        try:
            ds = read_coco_detection(path, tmp_path)
            assert expected, data["annotations"]
            assert ds.num_annotations == 6
        except DataFormatError as e:
            assert not expected, str(e)
            assert "malformed annotation" not in str(e), str(e)   # the slow path names the field
        outcomes[expected] += 1
    assert outcomes[True] > 10 and outcomes[False] > 10


@pytest.mark.parametrize("name", ["../outside.jpg", "/etc/passwd", "a/../../b.jpg", "s3://bucket/x.jpg",
                                  "C:\\\\x.jpg"])
def test_file_names_outside_the_image_folder_are_rejected(tmp_path, name):
    """An annotation file may only name images under the folder the user gives (--images)."""
    from vloss.data.coco_captions import read_coco_captions
    from vloss.data.coco_detection import read_coco_detection
    from vloss.teacher.boxes import parse_detection_input

    det = {"images": [{"id": 1, "file_name": name, "height": 10, "width": 10}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4], "area": 16,
                            "iscrowd": 0}],
           "categories": [{"id": 1, "name": "thing"}]}
    path = tmp_path / "det.json"
    path.write_text(json.dumps(det))
    with pytest.raises(DataFormatError, match=r"det\.json \[image id 1\] field 'file_name'.*not a path inside"):
        read_coco_detection(path, tmp_path)
    with pytest.raises(DataFormatError, match="not a path inside"):
        parse_detection_input(det, str(path))
    caps = {"images": [{"id": 1, "file_name": name}], "annotations": [{"id": 1, "image_id": 1, "caption": "a"}]}
    path.write_text(json.dumps(caps))
    with pytest.raises(DataFormatError, match="not a path inside"):
        read_coco_captions(path, tmp_path)
