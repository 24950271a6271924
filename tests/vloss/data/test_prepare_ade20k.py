"""``python -m vloss.data.prepare ade20k``: ADEChallengeData2016 + the instance release -> COCO panoptic.

The fixtures are written in the release's own formats: JPEG images, one-channel semantic PNGs
(0 = unlabeled, c = class c of ADE20K-150) and RGB instance PNGs (R = instance class 1..100,
G = instance id). One 6x8 image is worked out by hand below.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vloss.data.coco_panoptic import read_coco_panoptic
from vloss.data.errors import DataFormatError
from vloss.data.masks import rgb2id
from vloss.data.prepare import ade20k
from vloss.data.prepare.__main__ import main as prepare_main
from vloss.data.prepare.ade20k_categories import ADE20K_150, INSTANCE_TO_SEMANTIC
from vloss.data.prepare.common import PrepareError

# --- the hand-worked image: 6 rows x 8 columns ---------------------------------------------------
# semantic (1-based ADE20K-150): 1 = wall (stuff, category 0), 13 = person (thing, category 12),
# 0 = unlabeled
SEM = np.array([
    [1, 1, 1, 1, 1, 1, 1, 1],
    [1, 1, 13, 13, 1, 1, 0, 0],
    [1, 1, 13, 13, 1, 13, 0, 0],
    [1, 1, 1, 13, 13, 13, 1, 1],
    [0, 0, 1, 1, 13, 13, 13, 1],
    [0, 0, 1, 1, 1, 1, 1, 1],
], dtype=np.uint8)
# instance ids (G); R = 4 (instance class "person" -> class 13) wherever G > 0.
# Instance 2 also covers (4, 3), a wall pixel of the semantic map: the instance wins.
# (3, 3) and (4, 6) are person pixels without an instance: void.
INS = np.array([
    [0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 1, 1, 0, 0, 0, 0],
    [0, 0, 1, 1, 0, 2, 0, 0],
    [0, 0, 0, 0, 2, 2, 0, 0],
    [0, 0, 0, 2, 2, 2, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0],
], dtype=np.uint8)
PERSON_INSTANCE_CLASS = 4
# Segment ids are colours: wall = its palette colour (120, 120, 120); the first person = the person
# colour (150, 5, 61); the second person = the first free colour near it, (150, 5, 61) - (1, 1, 1).
W = 120 + 256 * 120 + 65536 * 120      # 7895160
A = 150 + 256 * 5 + 65536 * 61         # 3999126
B = 149 + 256 * 4 + 65536 * 60         # 3933333
EXPECTED_IDS = np.array([
    [W, W, W, W, W, W, W, W],
    [W, W, A, A, W, W, 0, 0],
    [W, W, A, A, W, B, 0, 0],
    [W, W, W, 0, B, B, W, W],
    [0, 0, W, B, B, B, 0, W],
    [0, 0, W, W, W, W, W, W],
], dtype=np.int64)
EXPECTED_SEGMENTS = [
    {"id": W, "category_id": 0, "area": 28, "bbox": [0, 0, 8, 6], "iscrowd": 0},
    {"id": A, "category_id": 12, "area": 4, "bbox": [2, 1, 2, 2], "iscrowd": 0},
    {"id": B, "category_id": 12, "area": 6, "bbox": [3, 2, 3, 3], "iscrowd": 0},
]


def _instance_png(ins_ids: np.ndarray, classes: np.ndarray) -> np.ndarray:
    return np.stack([classes, ins_ids, np.zeros_like(ins_ids)], axis=-1).astype(np.uint8)


def _save(path: Path, arr: np.ndarray, fmt: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)


def _second_image() -> tuple[np.ndarray, np.ndarray]:
    """10x12: sky over road over skyscraper (road and skyscraper share a palette colour), a car."""
    sem = np.zeros((10, 12), np.uint8)
    sem[:3] = 3          # sky
    sem[3:6] = 7         # road, route
    sem[6:] = 49         # skyscraper
    sem[7:9, 2:6] = 21   # car (a thing)
    ins = np.zeros((10, 12), np.uint8)
    ins[7:9, 2:6] = 1
    car_class = next(k for k, v in INSTANCE_TO_SEMANTIC.items() if v == 21)
    return sem, _instance_png(ins, np.where(ins > 0, car_class, 0))


def write_release(src: Path, *, train: bool = True, mapping: bool = True) -> Path:
    """ADEChallengeData2016/ with two val images (and one train image) in the release's formats."""
    root = src / "ADEChallengeData2016"
    rng = np.random.default_rng(0)
    images = {"validation": {"ADE_val_00000001": (SEM, _instance_png(INS, np.where(INS > 0, PERSON_INSTANCE_CLASS, 0))),
                             "ADE_val_00000002": _second_image()}}
    if train:
        images["training"] = {"ADE_train_00000001": _second_image()}
    for folder, items in images.items():
        for stem, (sem, ins) in items.items():
            h, w = sem.shape
            _save(root / "images" / folder / f"{stem}.jpg", rng.integers(0, 255, (h, w, 3), dtype=np.uint8), "JPEG")
            _save(root / "annotations" / folder / f"{stem}.png", sem)
            _save(root / "annotations_instance" / folder / f"{stem}.png", ins)
    if mapping:   # the release's categoryMapping.txt: header, then "instance<TAB><TAB>class150<TAB><TAB>fullADE"
        rows = ["Instacne100\tSceneParse150\tFullADE20K"] + [f"{k}\t\t{v}\t\t{1000 + k}"
                                                              for k, v in INSTANCE_TO_SEMANTIC.items()]
        (root / "categoryMapping.txt").write_text("\n".join(rows) + "\n")
    return src


def _prepare(src: Path, out: Path, splits=("val",), **kw):
    return ade20k.prepare(src, out, splits, stream=io.StringIO(), **kw)


def _ids(path: Path) -> np.ndarray:
    return rgb2id(np.asarray(Image.open(path).convert("RGB")))


# ----------------------------------------------------------------------------- the category table

def test_category_table_is_mask2formers_ade20k_150():
    ids = [c[0] for c in ADE20K_150]
    assert ids == list(range(150))
    things = {cid for cid, t, _, _ in ADE20K_150 if t}
    assert len(things) == 100 and len(ADE20K_150) - len(things) == 50
    # isthing is exactly "some instance class maps to it"
    assert things == {v - 1 for v in INSTANCE_TO_SEMANTIC.values()}
    assert sorted(INSTANCE_TO_SEMANTIC) == list(range(1, 101))
    assert len({c[3] for c in ADE20K_150}) == 150
    assert ADE20K_150[0][3] == "wall" and ADE20K_150[12][3] == "person" and ADE20K_150[149][3] == "flag"


# ----------------------------------------------------------------------------- one image by hand

def test_hand_worked_image_converts_exactly():
    ids, segments, stats = ade20k.convert_image(SEM, _instance_png(INS, np.where(INS > 0, PERSON_INSTANCE_CLASS, 0)))
    assert np.array_equal(ids, EXPECTED_IDS)
    assert segments == EXPECTED_SEGMENTS
    assert stats == {"stuff_segments": 1, "thing_segments": 2, "stuff_pixels_under_instances": 1,
                     "stuff_segments_covered": 0, "thing_pixels_without_instance": 2,
                     "instance_pixels_on_unlabeled": 0, "void_pixels": 10}


def test_prepared_files_of_the_hand_worked_image(tmp_path):
    src, out = write_release(tmp_path / "dl"), tmp_path / "data"
    [summary] = _prepare(src, out)
    dst = out / "ade20k_panoptic"
    assert np.array_equal(_ids(dst / "ade20k_panoptic_val" / "ADE_val_00000001.png"), EXPECTED_IDS)
    data = json.loads((dst / "ade20k_panoptic_val.json").read_text())
    assert data["images"][0] == {"id": "ADE_val_00000001", "file_name": "ADE_val_00000001.jpg", "width": 8,
                                 "height": 6}
    assert data["annotations"][0] == {"image_id": "ADE_val_00000001", "file_name": "ADE_val_00000001.png",
                                      "segments_info": EXPECTED_SEGMENTS}
    assert data["categories"] == ade20k.categories_json()
    assert json.loads((dst / "ade20k_150_categories.json").read_text()) == ade20k.categories_json()
    # the images folder is a symlink to the release's
    link = dst / "images" / "validation"
    assert link.is_symlink() and link.resolve() == (src / "ADEChallengeData2016/images/validation").resolve()
    assert summary.counts == {"images": 2, "segments": 3 + 4, "categories": 150}
    assert summary.skips.total == 0
    text = "\n".join(summary.lines())
    assert "expected 2000 for the official release" in text and "150: 100 things, 50 stuff" in text
    assert "agrees with the built-in table" in text


def test_shared_stuff_colour_gets_its_own_id_and_covered_stuff_is_dropped():
    sem, ins = _second_image()
    ids, segments, _ = ade20k.convert_image(sem, ins)
    by_cat = {s["category_id"]: s for s in segments}
    assert set(by_cat) == {2, 6, 48, 20}
    road, sky = by_cat[6]["id"], by_cat[48]["id"]
    assert road == 140 * 65793 and sky != road            # road keeps the shared colour, skyscraper moves
    assert len({s["id"] for s in segments}) == len(segments)
    for s in segments:
        assert s["area"] == int((ids == s["id"]).sum())
    # a stuff region that instances cover entirely leaves no segment behind
    sem2 = np.full((4, 4), 1, np.uint8)
    ins2 = _instance_png(np.ones((4, 4), np.uint8), np.full((4, 4), PERSON_INSTANCE_CLASS, np.uint8))
    ids2, segments2, stats2 = ade20k.convert_image(sem2, ins2)
    assert [s["category_id"] for s in segments2] == [12] and stats2["stuff_segments_covered"] == 1
    assert stats2["stuff_pixels_under_instances"] == 16


def test_bad_instance_maps_are_named_errors():
    sem = np.ones((2, 2), np.uint8)
    mixed = _instance_png(np.ones((2, 2), np.uint8), np.array([[4, 4], [4, 5]], np.uint8))
    with pytest.raises(DataFormatError, match="instance 1 has pixels of instance classes"):
        ade20k.convert_image(sem, mixed, where="x.png")
    no_class = _instance_png(np.ones((2, 2), np.uint8), np.zeros((2, 2), np.uint8))
    with pytest.raises(DataFormatError, match="instance class 0"):
        ade20k.convert_image(sem, no_class)
    with pytest.raises(DataFormatError, match="not a class of ADE20K-150"):
        ade20k.convert_image(np.full((2, 2), 151, np.uint8), no_class)


# ----------------------------------------------------------------------------- the project's readers

def eval_api():
    """``(resolve_eval_paths, load_eval_set)`` of the evaluation job (no Ray needed), wherever they live."""
    import importlib

    for name in ("pipelines.evaluate.tasks", "pipelines.evaluate.data"):
        mod = importlib.import_module(name)
        if hasattr(mod, "resolve_eval_paths") and hasattr(mod, "load_eval_set"):
            return mod.resolve_eval_paths, mod.load_eval_set
    raise AssertionError("the evaluation job's resolve_eval_paths / load_eval_set moved")


def test_output_loads_through_the_readers(tmp_path):
    resolve_eval_paths, load_eval_set = eval_api()
    src, out = write_release(tmp_path / "dl"), tmp_path / "data"
    _prepare(src, out, ("val", "train"))
    dst = out / "ade20k_panoptic"
    for split, folder, n in (("val", "validation", 2), ("train", "training", 1)):
        ds = read_coco_panoptic(dst / f"ade20k_panoptic_{split}.json", dst / "images" / folder,
                                dst / f"ade20k_panoptic_{split}", check_pngs=True)
        assert len(ds) == n and len(ds.thing_names) == 100 and len(ds.stuff_names) == 50
        assert all(im.image_path.is_file() for im in ds.images)
    paths = resolve_eval_paths("ade20k_panoptic", data=out)
    assert paths.gt_json == (dst / "ade20k_panoptic_val.json").resolve()
    ev = load_eval_set("ade20k_panoptic", paths)
    assert len(ev.names) == 150 and sum(ev.is_thing) == 100 and len(ev.images) == 2
    assert ev.images[0].image_id == "ADE_val_00000001" and Path(ev.images[0].path).is_file()


def test_workers_give_the_same_files(tmp_path):
    src = write_release(tmp_path / "dl", train=False)
    _prepare(src, tmp_path / "one", workers=1)
    _prepare(src, tmp_path / "two", workers=2)
    for name in ("ADE_val_00000001.png", "ADE_val_00000002.png"):
        a = (tmp_path / "one/ade20k_panoptic/ade20k_panoptic_val" / name).read_bytes()
        assert a == (tmp_path / "two/ade20k_panoptic/ade20k_panoptic_val" / name).read_bytes()


# ----------------------------------------------------------------------------- resume and bad input

def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.lstat().st_mtime_ns for p in folder.rglob("*")}


def test_rerun_is_a_no_op(tmp_path):
    src, out = write_release(tmp_path / "dl", train=False), tmp_path / "data"
    _prepare(src, out)
    before = _mtimes(out)
    stream = io.StringIO()
    [summary] = ade20k.prepare(src, out, ("val",), stream=stream)
    assert summary.reused and "already prepared" in stream.getvalue()
    assert _mtimes(out) == before


def test_interrupted_run_is_resumed(tmp_path, monkeypatch):
    src, out = write_release(tmp_path / "dl", train=False), tmp_path / "data"
    clean = tmp_path / "clean"
    _prepare(src, clean)
    real = ade20k.convert_file

    def dies_on_the_second(image, *args):
        if image.stem == "ADE_val_00000002":
            raise KeyboardInterrupt
        return real(image, *args)

    monkeypatch.setattr(ade20k, "convert_file", dies_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        _prepare(src, out)
    monkeypatch.setattr(ade20k, "convert_file", real)
    png_dir = out / "ade20k_panoptic" / "ade20k_panoptic_val"
    first = png_dir / "ADE_val_00000001.png"
    assert first.is_file() and not (png_dir / "ADE_val_00000002.png").exists()
    assert not (out / "ade20k_panoptic" / "ade20k_panoptic_val.json").exists()
    # what a kill during a write leaves: a temporary with half a file
    (png_dir / ".ADE_val_00000002.png.tmp-1-abcdef").write_bytes(b"\x89PNG half")
    t_first = first.stat().st_mtime_ns
    [summary] = _prepare(src, out)
    assert first.stat().st_mtime_ns == t_first                       # finished file kept
    assert sorted(os.listdir(png_dir)) == ["ADE_val_00000001.png", "ADE_val_00000002.png"]
    for name in ("ADE_val_00000001.png", "ADE_val_00000002.png"):
        assert (png_dir / name).read_bytes() == (clean / "ade20k_panoptic/ade20k_panoptic_val" / name).read_bytes()
    got = json.loads((out / "ade20k_panoptic/ade20k_panoptic_val.json").read_text())
    want = json.loads((clean / "ade20k_panoptic/ade20k_panoptic_val.json").read_text())
    assert got["images"] == want["images"] and got["annotations"] == want["annotations"]
    assert summary.counts["images"] == 2


def test_a_removed_png_is_redone(tmp_path):
    src, out = write_release(tmp_path / "dl", train=False), tmp_path / "data"
    _prepare(src, out)
    png = out / "ade20k_panoptic/ade20k_panoptic_val/ADE_val_00000002.png"
    data = png.read_bytes()
    png.unlink()
    [summary] = _prepare(src, out)
    assert not summary.reused and png.read_bytes() == data


def test_missing_instance_png_is_a_counted_skip(tmp_path):
    src, out = write_release(tmp_path / "dl", train=False), tmp_path / "data"
    ins = src / "ADEChallengeData2016/annotations_instance/validation/ADE_val_00000002.png"
    saved = ins.read_bytes()
    ins.unlink()
    [summary] = _prepare(src, out)
    assert summary.counts["images"] == 1 and summary.skips.total == 1
    [(reason, n)] = summary.skips.counts.items()
    assert reason.startswith("no instance PNG") and summary.skips.examples[reason] == ["ADE_val_00000002"]
    assert any("skipped 1: no instance PNG" in line for line in summary.lines())
    # once the file is there, the next run converts it (and keeps the other)
    ins.write_bytes(saved)
    [summary] = _prepare(src, out)
    assert summary.counts["images"] == 2 and summary.skips.total == 0


def test_missing_release_folder_and_bad_mapping_are_clear_errors(tmp_path):
    src = write_release(tmp_path / "dl")
    shutil.rmtree(src / "ADEChallengeData2016/annotations_instance/training")
    with pytest.raises(PrepareError, match="annotations_instance/training not found .*annotations_instance.tar"):
        _prepare(src, tmp_path / "data", ("train",))
    with pytest.raises(PrepareError, match="no ADEChallengeData2016 release found"):
        _prepare(tmp_path / "nowhere", tmp_path / "data")
    mapping = src / "ADEChallengeData2016/categoryMapping.txt"
    mapping.write_text(mapping.read_text().replace("\n4\t\t13\t", "\n4\t\t14\t"))
    with pytest.raises(PrepareError, match=r"disagrees .* instance classes \[4\]"):
        _prepare(src, tmp_path / "data")


def test_size_mismatch_names_the_file(tmp_path):
    src = write_release(tmp_path / "dl", train=False)
    sem = src / "ADEChallengeData2016/annotations/validation/ADE_val_00000002.png"
    _save(sem, np.ones((3, 3), np.uint8))
    with pytest.raises(DataFormatError, match="ADE_val_00000002.png.*is 3x3 but its image"):
        _prepare(src, tmp_path / "data")


def test_command_line(tmp_path, capsys):
    src = write_release(tmp_path / "dl", train=False)
    assert prepare_main(["ade20k", "--src", str(src / "ADEChallengeData2016"), "--out", str(tmp_path / "data"),
                         "--split", "val", "--workers", "1", "--link", "copy"]) == 0
    out = capsys.readouterr().out
    assert "[ade20k val] done: 2 images (expected 2000 for the official release)" in out
    copied = tmp_path / "data/ade20k_panoptic/images/validation"
    assert not copied.is_symlink() and sorted(os.listdir(copied)) == ["ADE_val_00000001.jpg", "ADE_val_00000002.jpg"]
    assert prepare_main(["ade20k", "--src", str(tmp_path / "nowhere"), "--out", str(tmp_path / "data")]) == 1
    assert "is not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        prepare_main(["ade20k", "--src", str(src), "--out", str(tmp_path / "data"), "--split", "test"])
