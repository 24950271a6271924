"""``python -m vloss.data.prepare lvis``: LVIS v1 val JSON + COCO 2017 images -> lvis/.

The fixture JSON has LVIS v1's image records (no ``file_name``; ``coco_url`` names the COCO
folder and file), with images from both COCO train2017 and val2017, as LVIS v1 val has.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.vloss.data.test_prepare_ade20k import eval_api
from vloss.data.lvis_format import read_lvis
from vloss.data.prepare import lvis
from vloss.data.prepare.__main__ import main as prepare_main
from vloss.data.prepare.common import PrepareError

# image id, COCO folder its coco_url names, folder the file really lies in
IMAGES = [(139, "val2017", "val2017"), (391895, "train2017", "train2017"), (285, "val2017", "train2017")]


def _lvis_json() -> dict:
    cats = [{"id": k + 1, "name": name, "synonyms": [name], "def": f"a {name}", "frequency": f,
             "image_count": 3, "instance_count": 4, "synset": f"{name}.n.01"}
            for k, (name, f) in enumerate([("aerosol_can", "c"), ("bow_(weapon)", "r"), ("person", "f")])]
    images = [{"id": iid, "height": 20, "width": 30, "license": 1, "flickr_url": "",
               "coco_url": f"http://images.cocodataset.org/{folder}/{iid:012d}.jpg",
               "date_captured": "2013-11-14 17:02:52", "neg_category_ids": [2], "not_exhaustive_category_ids": []}
              for iid, folder, _ in IMAGES]
    anns = [{"id": k + 1, "image_id": iid, "category_id": 1 if k % 2 else 3, "bbox": [2.0, 3.0, 10.0, 8.0],
             "area": 80.0, "segmentation": [[2.0, 3.0, 12.0, 3.0, 12.0, 11.0, 2.0, 11.0]]}
            for k, (iid, _, _) in enumerate(IMAGES)]
    return {"info": {"year": 2020}, "licenses": [], "images": images, "annotations": anns, "categories": cats}


def write_download(dl: Path, *, as_zip: bool = False) -> Path:
    for iid, _, where in IMAGES:
        (dl / where).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((20, 30, 3), iid % 251, np.uint8)).save(dl / where / f"{iid:012d}.jpg")
    text = json.dumps(_lvis_json())
    if as_zip:
        with zipfile.ZipFile(dl / "lvis_v1_val.json.zip", "w") as zf:
            zf.writestr("lvis_v1_val.json", text)
    else:
        (dl / "lvis").mkdir()
        (dl / "lvis/lvis_v1_val.json").write_text(text)
    return dl


def _prepare(src: Path, out: Path, **kw):
    return lvis.prepare(src, out, stream=io.StringIO(), **kw)


def test_images_go_where_the_reader_looks_for_them(tmp_path):
    src, out = write_download(tmp_path / "dl"), tmp_path / "data"
    [summary] = _prepare(src, out)
    dst = out / "lvis"
    assert (dst / "lvis_v1_val.json").is_symlink()
    assert sorted(os.listdir(dst / "val2017")) == ["000000000139.jpg", "000000000285.jpg"]
    assert os.listdir(dst / "train2017") == ["000000391895.jpg"]
    # 285's coco_url says val2017, its file was found in train2017
    assert (dst / "val2017/000000000285.jpg").resolve() == (src / "train2017/000000000285.jpg").resolve()
    ds = read_lvis(dst / "lvis_v1_val.json", dst)
    assert len(ds) == 3 and all(im.path.is_file() for im in ds.images)
    resolve_eval_paths, load_eval_set = eval_api()
    ev = load_eval_set("lvis", resolve_eval_paths("lvis", data=out))
    assert len(ev.images) == 3 and all(Path(im.path).is_file() for im in ev.images)
    assert ev.names == ["aerosol can", "bow (weapon)", "person"]
    assert summary.counts == {"images": 3, "annotations": 3, "categories": 3}
    text = "\n".join(summary.lines())
    assert "3 images (expected 19809 for the official release)" in text
    assert "1 found in the other folder" in text and "1 r, 1 c, 1 f" in text


def test_zip_json_and_coco_option(tmp_path):
    coco_root = tmp_path / "coco"
    src = write_download(coco_root, as_zip=True)
    ann = tmp_path / "lvis_dl"
    ann.mkdir()
    os.rename(src / "lvis_v1_val.json.zip", ann / "lvis_v1_val.json.zip")
    out = tmp_path / "data"
    assert prepare_main(["lvis", "--src", str(ann), "--coco", str(coco_root), "--out", str(out),
                         "--link", "hardlink"]) == 0
    dst = out / "lvis"
    assert (dst / "lvis_v1_val.json").is_file() and not (dst / "lvis_v1_val.json").is_symlink()
    assert os.path.samefile(dst / "train2017/000000391895.jpg", coco_root / "train2017/000000391895.jpg")
    assert len(read_lvis(dst / "lvis_v1_val.json", dst)) == 3


def test_missing_image_is_an_error_then_resumed(tmp_path):
    src, out = write_download(tmp_path / "dl"), tmp_path / "data"
    moved = tmp_path / "000000391895.jpg"
    os.rename(src / "train2017/000000391895.jpg", moved)
    with pytest.raises(PrepareError, match=r"1 of 3 images of lvis_v1_val.json: image not found in .*; "
                                           r"e\.g\. image id 391895 \(000000391895\.jpg\)"):
        _prepare(src, out)
    kept = out / "lvis/val2017/000000000139.jpg"
    t_kept = kept.lstat().st_mtime_ns
    (out / "lvis/train2017").mkdir(exist_ok=True)
    (out / "lvis/train2017/.000000391895.jpg.tmp-1-abcdef").write_bytes(b"half")   # what a kill leaves
    os.rename(moved, src / "train2017/000000391895.jpg")
    [summary] = _prepare(src, out)
    assert kept.lstat().st_mtime_ns == t_kept and summary.counts["images"] == 3
    assert os.listdir(out / "lvis/train2017") == ["000000391895.jpg"]
    before = {p: p.lstat().st_mtime_ns for p in out.rglob("*")}
    [summary] = _prepare(src, out)
    assert summary.reused and {p: p.lstat().st_mtime_ns for p in out.rglob("*")} == before


def test_no_json_or_no_coco_is_a_clear_error(tmp_path):
    with pytest.raises(PrepareError, match=r"lvis_v1_val.json \(or lvis_v1_val.json.zip\) not found"):
        _prepare(tmp_path, tmp_path / "data")
    (tmp_path / "lvis_v1_val.json").write_text(json.dumps(_lvis_json()))
    with pytest.raises(PrepareError, match=r"no COCO 2017 image folders .* pass --coco DIR"):
        _prepare(tmp_path, tmp_path / "data")
