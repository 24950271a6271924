"""``python -m vloss.data.prepare objects365``: the v2 download (JSON + patch folders) -> objects365/.

The fixture JSON names files as the released ``zhiyuan_objv2_train.json`` does
(``images/v1/patch0/objects365_v1_...jpg``, ``images/v2/patch16/objects365_v2_...jpg``) while the
files lie in ``train/patchN/``, as the extracted patch archives hold them.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vloss.data.coco_detection import read_coco_detection
from vloss.data.prepare import objects365
from vloss.data.prepare.__main__ import main as prepare_main
from vloss.data.prepare.common import PrepareError
from vloss.teacher.boxes import parse_detection_input

CATEGORIES = [{"id": 1, "name": "Person"}, {"id": 2, "name": "Sneakers"}, {"id": 3, "name": "Chair"}]
# id, released file_name, where the file lies in the download (None: not there), width, height
IMAGES = [
    (420917, "images/v1/patch0/objects365_v1_00420917.jpg", "train/patch0/objects365_v1_00420917.jpg", 32, 24),
    (908726, "images/v2/patch16/objects365_v2_00908726.jpg", "train/patch16/objects365_v2_00908726.jpg", 40, 30),
    (908727, "images/v2/patch17/objects365_v2_00908727.jpg", None, 40, 30),
]
ANNOTATIONS = [
    {"id": 1, "image_id": 420917, "category_id": 1, "bbox": [2.5, 3.0, 10.0, 12.0], "area": 120.0, "iscrowd": 0},
    {"id": 2, "image_id": 420917, "category_id": 2, "bbox": [20.0, 10.0, 0.0, 5.0], "area": 0.0, "iscrowd": 0},
    {"id": 3, "image_id": 908726, "category_id": 3, "bbox": [30.0, 20.0, 15.0, 15.0], "area": 225.0,
     "iscrowd": 0},
    {"id": 4, "image_id": 908726, "category_id": 1, "bbox": [50.0, 5.0, 4.0, 4.0], "area": 16.0, "iscrowd": 0},
    {"id": 5, "image_id": 908727, "category_id": 1, "bbox": [1.0, 1.0, 4.0, 4.0], "area": 16.0, "iscrowd": 0},
]


def write_download(dl: Path) -> Path:
    images = []
    for iid, file_name, where, w, h in IMAGES:
        images.append({"height": h, "id": iid, "license": 5, "width": w, "file_name": file_name,
                       "url": f"http://example.invalid/{Path(file_name).name}"})
        if where is not None:
            (dl / where).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((h, w, 3), iid % 251, np.uint8)).save(dl / where, format="JPEG")
    (dl / "train" / "patch17.tar.gz").write_bytes(b"not extracted")
    data = {"images": images, "annotations": ANNOTATIONS, "categories": CATEGORIES,
            "licenses": [{"id": 5, "name": "x", "url": ""}]}
    (dl / "zhiyuan_objv2_train.json").write_text(json.dumps(data))
    return dl


def _prepare(src: Path, out: Path, **kw):
    return objects365.prepare(src, out, stream=io.StringIO(), **kw)


def test_file_name_quirks_and_counted_skips(tmp_path):
    src, out = write_download(tmp_path / "dl"), tmp_path / "data"
    [summary] = _prepare(src, out)
    dst = out / "objects365"
    data = json.loads((dst / "annotations/train.json").read_text())
    assert [im["file_name"] for im in data["images"]] == ["patch0/objects365_v1_00420917.jpg",
                                                          "patch16/objects365_v2_00908726.jpg"]
    assert data["images"][0]["url"].endswith("objects365_v1_00420917.jpg")   # other fields as released
    assert [a["id"] for a in data["annotations"]] == [1, 3] and data["categories"] == CATEGORIES
    assert data["licenses"] == [{"id": 5, "name": "x", "url": ""}]
    link = dst / "images/train/patch0/objects365_v1_00420917.jpg"
    assert link.is_symlink() and link.resolve() == (src / "train/patch0/objects365_v1_00420917.jpg").resolve()
    assert summary.counts == {"images": 2, "boxes": 2, "categories": 3}
    assert summary.skips.counts == {"image file not found in the download": 1,
                                    "box of an image whose file was not found": 1,
                                    "box with non-positive width or height": 1,
                                    "box entirely outside its image": 1}
    [missing] = summary.skips.examples["image file not found in the download"]
    assert missing.startswith("images/v2/patch17/objects365_v2_00908727.jpg (patch17/ not extracted")
    text = "\n".join(summary.lines())
    assert "expected about 1.74M for the official v2 release" in text and "4 skipped" in text


def test_output_loads_through_the_readers(tmp_path):
    src, out = write_download(tmp_path / "dl"), tmp_path / "data"
    _prepare(src, out)
    dst = out / "objects365"
    ds = read_coco_detection(dst / "annotations/train.json", dst / "images/train")
    assert len(ds) == 2 and ds.num_annotations == 2 and all(im.path.is_file() for im in ds.images)
    boxes = parse_detection_input(json.loads((dst / "annotations/train.json").read_text()), "train.json")
    assert boxes.num_boxes == 2 and boxes.num_clipped == 1    # box 3 runs past its image's edge: clipped, kept


def test_v2_prefix_folders_and_copies(tmp_path):
    """Files under images/v2/patchN (another way the download is unpacked), placed as copies."""
    src = write_download(tmp_path / "dl")
    (src / "images").mkdir()
    os.rename(src / "train", src / "images" / "v2")
    out = tmp_path / "data"
    [summary] = _prepare(src, out, link="copy")
    copied = out / "objects365/images/train/patch16/objects365_v2_00908726.jpg"
    assert copied.is_file() and not copied.is_symlink() and summary.counts["images"] == 2


def test_rerun_is_a_no_op_and_a_partial_run_is_completed(tmp_path):
    src, out = write_download(tmp_path / "dl"), tmp_path / "data"
    _prepare(src, out)
    before = {p: p.lstat().st_mtime_ns for p in out.rglob("*")}
    stream = io.StringIO()
    [summary] = objects365.prepare(src, out, stream=stream)
    assert summary.reused and "already prepared" in stream.getvalue()
    assert {p: p.lstat().st_mtime_ns for p in out.rglob("*")} == before
    # a killed run: the JSON not yet written, one link missing, a temporary left behind
    dst = out / "objects365"
    (dst / "annotations/train.json").unlink()
    (dst / "images/train/patch16/objects365_v2_00908726.jpg").unlink()
    (dst / "images/train/patch16/.objects365_v2_00908726.jpg.tmp-1-abcdef").write_bytes(b"half")
    kept = dst / "images/train/patch0/objects365_v1_00420917.jpg"
    t_kept = kept.lstat().st_mtime_ns
    [summary] = _prepare(src, out)
    assert not summary.reused and kept.lstat().st_mtime_ns == t_kept
    assert sorted(os.listdir(dst / "images/train/patch16")) == ["objects365_v2_00908726.jpg"]
    assert len(read_coco_detection(dst / "annotations/train.json", dst / "images/train")) == 2
    # extracting the missing patch changes the download: the next run finds the image
    (src / "train/patch17").mkdir()
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(src / "train/patch17/objects365_v2_00908727.jpg")
    [summary] = _prepare(src, out)
    assert summary.counts["images"] == 3 and "image file not found in the download" not in summary.skips.counts


def test_missing_json_and_no_images_are_clear_errors(tmp_path, capsys):
    src = write_download(tmp_path / "dl")
    os.rename(src / "zhiyuan_objv2_train.json", src / "elsewhere.json")
    (src / "zhiyuan_objv2_train.json.tar.gz").write_bytes(b"x")
    with pytest.raises(PrepareError, match=r"zhiyuan_objv2_train.json not found .*extract it first"):
        _prepare(src, tmp_path / "data")
    os.rename(src / "elsewhere.json", src / "zhiyuan_objv2_train.json")
    os.rename(src / "train", src / "moved")
    assert prepare_main(["objects365", "--src", str(src), "--out", str(tmp_path / "data")]) == 1
    assert "none of the 3 images" in capsys.readouterr().err
