"""The readers on real published samples and on the synthetic world, against
pycocotools / lvis-api and brute-force decoding of the PNGs."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from lvis import LVIS
from PIL import Image
from pycocotools.coco import COCO

from vloss.data.coco_captions import read_coco_captions
from vloss.data.coco_detection import read_coco_detection
from vloss.data.coco_panoptic import check_panoptic_png, load_panoptic_ids, read_coco_panoptic
from vloss.data.lvis_format import read_lvis, resolve_lvis_image_path
from vloss.data.masks import segmentation_to_mask


def _raw(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)


def _png_ids_by_formula(path: Path) -> np.ndarray:
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.uint32)
    return (rgb[..., 0] + (rgb[..., 1] << 8) + (rgb[..., 2] << 16)).astype(np.int64)


# ----------------------------------------------------------------------------- real samples

def test_panoptic_reader_reproduces_the_coco_sample(shared_data):
    root = shared_data / "coco-panoptic-sample"
    ds = read_coco_panoptic(root / "panoptic_examples.json", root / "input_images",
                            root / "panoptic_examples", check_pngs=True)
    raw = _raw(root / "panoptic_examples.json")
    raw_cats = {c["id"]: c for c in raw["categories"]}
    assert len(ds.categories) == 133 and len(ds.thing_names) == 80 and len(ds.stuff_names) == 53
    assert ds.num_segments == 50 and len(ds) == 2
    for ann in raw["annotations"]:
        im = ds.images_by_id[ann["image_id"]]
        assert im.image_path.is_absolute() and im.image_path.is_file() and im.png_path.is_file()
        ids = _png_ids_by_formula(im.png_path)
        assert np.array_equal(load_panoptic_ids(im.png_path), ids)
        assert ids.shape == (im.height, im.width)
        assert [s.id for s in im.segments] == [s["id"] for s in ann["segments_info"]]
        for seg, s in zip(im.segments, ann["segments_info"]):
            assert seg.category_id == s["category_id"] and seg.iscrowd == bool(s["iscrowd"])
            assert seg.isthing == bool(raw_cats[s["category_id"]]["isthing"])
            assert seg.area == s["area"] == int((ids == seg.id).sum())
            assert list(seg.bbox) == s["bbox"]
        assert set(np.unique(ids).tolist()) - {0} == {s.id for s in im.segments}
    assert ds.categories_by_id[1].name == "person" and ds.vocabulary[0] == "person"


def test_detection_reader_on_the_coco_sample_matches_pycocotools(shared_data):
    path = shared_data / "coco-panoptic-sample" / "panoptic_coco_detection_format.json"
    ds = read_coco_detection(path, shared_data / "coco-panoptic-sample" / "input_images")
    coco = COCO(str(path))
    assert ds.num_annotations == 50 == len(coco.getAnnIds())
    assert sorted(ds.images_by_id) == sorted(coco.getImgIds())
    for a in ds.annotations():
        ref = coco.anns[a.id]
        assert (a.image_id, a.category_id, a.bbox, a.area, a.iscrowd) == (
            ref["image_id"], ref["category_id"], ref["bbox"], ref["area"], ref["iscrowd"])
        im = ds.images_by_id[a.image_id]
        mask = segmentation_to_mask(a.segmentation, im.height, im.width)
        assert np.array_equal(mask, coco.annToMask(ref).astype(bool))
    assert all(im.path.is_file() for im in ds.images)
    assert len(ds.vocabulary) == 133 and all(c.isthing is None for c in ds.categories)


def test_lvis_reader_counts_rcf_like_the_raw_json_and_lvis_api(shared_data):
    path = shared_data / "lvis-v0.5-val-100" / "lvis_val_100.json"
    ds = read_lvis(path, shared_data / "val2017")
    raw = _raw(path)
    by_raw = Counter(c["frequency"] for c in raw["categories"])
    api = LVIS(str(path))
    by_api = Counter(c["frequency"] for c in api.load_cats(None))
    assert ds.frequency_counts() == dict(by_raw) == dict(by_api)
    assert sum(ds.frequency_counts().values()) == 1230
    assert len(ds) == 100 and ds.num_annotations == 977 == len(api.get_ann_ids())
    for im in ds.images:
        ref = api.imgs[im.id]
        assert im.neg_category_ids == ref["neg_category_ids"]
        assert im.not_exhaustive_category_ids == ref["not_exhaustive_category_ids"]
        assert sorted(a.id for a in im.annotations) == sorted(api.get_ann_ids(img_ids=[im.id]))
        # v0.5 records carry file_name: rule 1.
        assert im.path == shared_data / "val2017" / ref["file_name"]
    assert len(ds.category_ids("r")) == by_raw["r"]
    assert ds.categories_by_id[1].display_name == raw["categories"][0]["name"].replace("_", " ")


def test_lvis_image_path_rule():
    url = "http://images.cocodataset.org/val2017/000000000139.jpg"
    assert resolve_lvis_image_path(None, url, "/d/coco/val2017") == Path("/d/coco/val2017/000000000139.jpg")
    assert resolve_lvis_image_path(None, url, "/d/coco") == Path("/d/coco/val2017/000000000139.jpg")
    assert resolve_lvis_image_path("x.jpg", url, "/d/coco") == Path("/d/coco/x.jpg")


# ----------------------------------------------------------------------------- synthetic world

@pytest.mark.parametrize("split", ["train", "val", "ade"])
def test_panoptic_reader_on_the_world(synthetic_world, split):
    if split == "ade":
        args = ("ade20k_panoptic/ade20k_panoptic_val.json", "ade20k_panoptic/images/validation",
                "ade20k_panoptic/ade20k_panoptic_val")
    else:
        args = (f"coco_panoptic/annotations/panoptic_{split}2017.json", f"coco_panoptic/{split}2017",
                f"coco_panoptic/annotations/panoptic_{split}2017")
    ds = read_coco_panoptic(*(synthetic_world / a for a in args), check_pngs=True)
    raw = _raw(synthetic_world / args[0])
    assert len(ds) == len(raw["images"])
    assert ds.num_segments == sum(len(a["segments_info"]) for a in raw["annotations"])
    assert all(im.image_path.is_file() for im in ds.images)
    if split == "ade":
        assert isinstance(ds.images[0].id, str) and 0 in ds.categories_by_id
    for im in ds.images[:3]:
        ids = check_panoptic_png(im)
        for seg in im.segments:
            assert seg.area == int((ids == seg.id).sum())


def test_detection_captions_lvis_readers_on_the_world(synthetic_world):
    w = synthetic_world
    det = read_coco_detection(w / "objects365/annotations/train.json", w / "objects365/images/train")
    truth = read_coco_detection(w / "objects365/truth/train_masks.json", w / "objects365/images/train")
    coco = COCO(str(w / "objects365/annotations/train.json"))
    assert det.num_annotations == len(coco.getAnnIds()) == truth.num_annotations
    assert all(a.segmentation is None for a in det.annotations())
    assert all(isinstance(a.segmentation, dict) for a in truth.annotations())
    assert all(im.path.is_file() for im in det.images)

    caps = read_coco_captions(w / "coco_panoptic/annotations/captions_train2017.json", w / "coco_panoptic/train2017")
    ref = COCO(str(w / "coco_panoptic/annotations/captions_train2017.json"))
    for im in caps.images:
        assert im.captions == [a["caption"] for a in ref.imgToAnns[im.id]]
        assert im.path.is_file()
    assert caps.num_captions == len(ref.getAnnIds())
    world = _raw(w / "world.json")
    it = read_coco_captions(w / "image_text/annotations/captions.json", w / "image_text/images")
    for name in world["classes"]["unseen_things"] + world["classes"]["unseen_stuff"]:
        assert it.mentions(name), name
    assert {"tile", "snow", "stone"} <= it.words()

    lvis = read_lvis(w / "lvis/lvis_v1_val.json", w / "lvis/val2017")
    assert lvis.frequency_counts() == world["lvis_frequency"]["counts"]
    assert all(im.path.is_file() and im.file_name is None for im in lvis.images)
    assert set(world["vocabularies"]["lvis"]["things"]) == set(lvis.vocabulary)
