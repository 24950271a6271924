"""``python -m vloss.data.prepare coco``: the real COCO panoptic sample laid out as the COCO download.

The sample (``shared/data/coco-panoptic-sample``: two val2017 images with their official panoptic
annotations and the same segments in detection format) is arranged as the unpacked COCO zips;
the captions files are written by the test, as COCO's captions format has them.
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from tests.vloss.data.test_prepare_ade20k import eval_api
from vloss.data.coco_captions import read_coco_captions
from vloss.data.coco_detection import read_coco_detection
from vloss.data.coco_panoptic import read_coco_panoptic
from vloss.data.prepare import coco
from vloss.data.prepare import common as prep_common
from vloss.data.prepare.__main__ import main as prepare_main
from vloss.data.prepare.common import PrepareError


def _captions(panoptic: dict) -> dict:
    anns = [{"id": 10 * k + j, "image_id": im["id"], "caption": f"A photo, caption {j}."}
            for k, im in enumerate(panoptic["images"]) for j in range(5)]
    return {"info": panoptic["info"], "licenses": panoptic["licenses"], "images": panoptic["images"],
            "annotations": anns}


def write_download(shared_data: Path, dl: Path, *, png_zip: bool = False, splits=("train", "val")) -> Path:
    """The sample as ``train2017/ val2017/ annotations/...`` (the same two images in both splits)."""
    sample = shared_data / "coco-panoptic-sample"
    panoptic = json.loads((sample / "panoptic_examples.json").read_text())
    ann = dl / "annotations"
    ann.mkdir(parents=True, exist_ok=True)
    for split in splits:
        year = f"{split}2017"
        shutil.copytree(sample / "input_images", dl / year)
        (ann / f"panoptic_{year}.json").write_text(json.dumps(panoptic))
        if png_zip:   # as panoptic_annotations_trainval2017.zip ships them: a zip inside the zip
            with zipfile.ZipFile(ann / f"panoptic_{year}.zip", "w") as zf:
                for png in sorted((sample / "panoptic_examples").iterdir()):
                    zf.write(png, f"panoptic_{year}/{png.name}")
        else:
            shutil.copytree(sample / "panoptic_examples", ann / f"panoptic_{year}")
        (ann / f"captions_{year}.json").write_text(json.dumps(_captions(panoptic)))
        shutil.copyfile(sample / "panoptic_coco_detection_format.json", ann / f"instances_{year}.json")
    return dl


def _prepare(src: Path, out: Path, splits=("train", "val"), **kw):
    return coco.prepare(src, out, splits, stream=io.StringIO(), **kw)


def test_real_sample_is_checked_and_linked(shared_data, tmp_path):
    src, out = write_download(shared_data, tmp_path / "dl"), tmp_path / "data"
    train, val = _prepare(src, out)
    assert val.counts == {"images": 2, "segments": 50, "categories": 133, "captions": 10, "instances": 50}
    text = "\n".join(val.lines())
    assert "2 images (expected 5000 for the official release)" in text
    assert "133 categories (expected 133: 80 things, 53 stuff)" in text and "80 things, 53 stuff" in text
    assert "expected 118287 for the official release" in "\n".join(train.lines())
    dst = out / "coco_panoptic"
    assert (dst / "val2017").is_symlink() and (dst / "annotations/panoptic_val2017").is_symlink()
    for split in ("train", "val"):
        year = f"{split}2017"
        ds = read_coco_panoptic(dst / f"annotations/panoptic_{year}.json", dst / year,
                                dst / f"annotations/panoptic_{year}", check_pngs=True)
        assert len(ds) == 2 and all(im.image_path.is_file() for im in ds.images)
        caps = read_coco_captions(dst / f"annotations/captions_{year}.json", dst / year)
        assert caps.num_captions == 10
        det = read_coco_detection(dst / f"annotations/instances_{year}.json", dst / year)
        assert det.num_annotations == 50
    resolve_eval_paths, load_eval_set = eval_api()
    ev = load_eval_set("coco_panoptic", resolve_eval_paths("coco_panoptic", data=out))
    assert len(ev.names) == 133 and len(ev.images) == 2 and all(Path(im.path).is_file() for im in ev.images)
    # the coco_instances evaluation finds its files with the coco_panoptic folder as its root
    ev = load_eval_set("coco_instances", resolve_eval_paths("coco_instances", data=dst))
    assert len(ev.images) == 2


def test_nested_png_zip_is_extracted(shared_data, tmp_path):
    src, out = write_download(shared_data, tmp_path / "dl", png_zip=True, splits=("val",)), tmp_path / "data"
    [summary] = _prepare(src, out, ("val",))
    pngs = out / "coco_panoptic/annotations/panoptic_val2017"
    assert not pngs.is_symlink() and sorted(p.name for p in pngs.iterdir()) == ["000000142238.png",
                                                                                  "000000439180.png"]
    sample = shared_data / "coco-panoptic-sample/panoptic_examples"
    assert all((pngs / p.name).read_bytes() == p.read_bytes() for p in sample.iterdir())
    assert any("extracted from" in line for line in summary.lines())


def test_interrupted_extraction_is_resumed_and_rerun_is_a_no_op(shared_data, tmp_path, monkeypatch):
    src, out = write_download(shared_data, tmp_path / "dl", png_zip=True, splits=("val",)), tmp_path / "data"
    real = prep_common.atomic_write_bytes
    calls = []

    def dies_on_the_second(path, data):
        calls.append(path)
        if len(calls) == 2:
            path.with_name(f".{path.name}.tmp-1-abcdef").write_bytes(data[:10])  # what a kill leaves
            raise KeyboardInterrupt
        return real(path, data)

    monkeypatch.setattr(prep_common, "atomic_write_bytes", dies_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        _prepare(src, out, ("val",))
    monkeypatch.setattr(prep_common, "atomic_write_bytes", real)
    pngs = out / "coco_panoptic/annotations/panoptic_val2017"
    first = pngs / "000000142238.png"
    t_first = first.stat().st_mtime_ns
    [summary] = _prepare(src, out, ("val",))
    assert not summary.reused and first.stat().st_mtime_ns == t_first
    assert sorted(p.name for p in pngs.iterdir()) == ["000000142238.png", "000000439180.png"]
    before = {p: p.lstat().st_mtime_ns for p in out.rglob("*")}
    stream = io.StringIO()
    [summary] = coco.prepare(src, out, ("val",), stream=stream)
    assert summary.reused and "already prepared" in stream.getvalue()
    assert {p: p.lstat().st_mtime_ns for p in out.rglob("*")} == before


def test_missing_png_or_image_is_a_clear_error(shared_data, tmp_path):
    src = write_download(shared_data, tmp_path / "dl", splits=("val",))
    (src / "annotations/panoptic_val2017/000000439180.png").unlink()
    with pytest.raises(PrepareError, match=r"1 of 2 panoptic PNGs missing from .*panoptic_val2017; "
                                           r"e\.g\. 000000439180\.png"):
        _prepare(src, tmp_path / "data", ("val",))
    src = write_download(shared_data, tmp_path / "dl2", splits=("val",))
    (src / "val2017/000000142238.jpg").unlink()
    with pytest.raises(PrepareError, match=r"1 of 2 images missing from .*val2017; e\.g\. 000000142238\.jpg"):
        _prepare(src, tmp_path / "data", ("val",))


def test_files_that_disagree_about_images_are_an_error(shared_data, tmp_path):
    src = write_download(shared_data, tmp_path / "dl", splits=("val",))
    path = src / "annotations/captions_val2017.json"
    caps = json.loads(path.read_text())
    caps["images"].append({**caps["images"][0], "id": 7})
    path.write_text(json.dumps(caps))
    with pytest.raises(PrepareError, match=r"list different images: 1 only in the captions file \(e\.g\. \[7\]\)"):
        _prepare(src, tmp_path / "data", ("val",))


def test_required_and_optional_files(shared_data, tmp_path, capsys):
    src = write_download(shared_data, tmp_path / "dl")
    (src / "annotations/captions_train2017.json").unlink()
    with pytest.raises(PrepareError, match="captions_train2017.json not found"):
        _prepare(src, tmp_path / "data", ("train",))
    (src / "annotations/instances_val2017.json").unlink()
    (src / "annotations/captions_val2017.json").unlink()
    [summary] = _prepare(src, tmp_path / "data", ("val",))
    assert "captions" not in summary.counts and any("instances_val2017.json not found" in n for n in summary.notes)
    assert prepare_main(["coco", "--src", str(src), "--out", str(tmp_path / "data"), "--split", "train"]) == 1
    assert "captions_train2017.json not found" in capsys.readouterr().err
