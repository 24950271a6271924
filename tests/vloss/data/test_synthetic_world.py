"""The synthetic world against independent tools: pycocotools, lvis-api, brute-force masks."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from lvis import LVIS
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from vloss.data.synthetic import WorldSizes, generate_world, load_world, main

REPO = Path(__file__).resolve().parents[3]

# The layout contract, written out independently of the generator's PATHS table
# (docs/DATA_LAYOUT.md).
LAYOUT_FILES = [
    "world.json",
    "coco_panoptic/annotations/panoptic_train2017.json",
    "coco_panoptic/annotations/panoptic_val2017.json",
    "coco_panoptic/annotations/captions_train2017.json",
    "objects365/annotations/train.json",
    "objects365/truth/train_masks.json",
    "image_text/annotations/captions.json",
    "ade20k_panoptic/ade20k_panoptic_val.json",
    "lvis/lvis_v1_val.json",
]
LAYOUT_DIRS = {  # directory -> suffix of every file in it
    "coco_panoptic/train2017": ".jpg", "coco_panoptic/val2017": ".jpg",
    "coco_panoptic/annotations/panoptic_train2017": ".png",
    "coco_panoptic/annotations/panoptic_val2017": ".png",
    "objects365/images/train": ".jpg", "image_text/images": ".jpg",
    "ade20k_panoptic/images/validation": ".jpg", "ade20k_panoptic/ade20k_panoptic_val": ".png",
    "lvis/val2017": ".jpg",
}
PANOPTIC = [  # (json, image dir, png dir)
    ("coco_panoptic/annotations/panoptic_train2017.json", "coco_panoptic/train2017",
     "coco_panoptic/annotations/panoptic_train2017"),
    ("coco_panoptic/annotations/panoptic_val2017.json", "coco_panoptic/val2017",
     "coco_panoptic/annotations/panoptic_val2017"),
    ("ade20k_panoptic/ade20k_panoptic_val.json", "ade20k_panoptic/images/validation",
     "ade20k_panoptic/ade20k_panoptic_val"),
]


def _load(root: Path, rel: str) -> dict:
    with open(root / rel) as f:
        return json.load(f)


def _png_ids(path: Path) -> np.ndarray:
    c = np.asarray(Image.open(path).convert("RGB")).astype(np.int64)
    return c[..., 0] + 256 * c[..., 1] + 65536 * c[..., 2]


def _brute_bbox(mask: np.ndarray) -> list[int]:
    ys, xs = np.where(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def _norm(name: str) -> str:
    return name.replace("_", " ")


def _training_classes(root: Path) -> dict[str, int]:
    """Class name -> number of training images (panoptic train + Objects365) containing it."""
    counts: dict[str, set] = defaultdict(set)
    pan = _load(root, PANOPTIC[0][0])
    names = {c["id"]: c["name"] for c in pan["categories"]}
    for a in pan["annotations"]:
        for s in a["segments_info"]:
            counts[names[s["category_id"]]].add(("pan", a["image_id"]))
    o365 = _load(root, "objects365/annotations/train.json")
    names = {c["id"]: c["name"] for c in o365["categories"]}
    for a in o365["annotations"]:
        counts[names[a["category_id"]]].add(("o365", a["image_id"]))
    return {k: len(v) for k, v in counts.items()}


def _mentions(captions: list[str], name: str) -> bool:
    *first, last = name.split()
    pat = re.compile(r"\b" + r"\s+".join(first + [re.escape(last) + r"(es|s)?"]) + r"\b")
    return any(pat.search(c) for c in captions)


def test_layout_matches_the_contract(synthetic_world):
    for rel in LAYOUT_FILES:
        assert (synthetic_world / rel).is_file(), rel
    for rel, suffix in LAYOUT_DIRS.items():
        files = list((synthetic_world / rel).iterdir())
        assert files and all(f.suffix == suffix for f in files), rel
    world = _load(synthetic_world, "world.json")
    for group in world["paths"].values():
        for rel in group.values():
            assert (synthetic_world / rel).exists(), rel
    resolved = load_world(synthetic_world)["paths"]
    assert resolved["lvis"]["val_json"] == (synthetic_world / "lvis/lvis_v1_val.json").resolve()
    assert all(p.is_absolute() and p.exists() for g in resolved.values() for p in g.values())
    assert world["sizes"] == {"coco_panoptic_train": 48, "coco_panoptic_val": 12, "objects365_train": 96,
                              "image_text": 96, "ade20k_val": 16, "lvis_val": 16, "pretrain_corpus": 4800}


def test_image_files_match_json_sizes(synthetic_world):
    checks = [(j, d) for j, d, _ in PANOPTIC] + [
        ("objects365/annotations/train.json", "objects365/images/train"),
        ("image_text/annotations/captions.json", "image_text/images"),
        ("coco_panoptic/annotations/captions_train2017.json", "coco_panoptic/train2017")]
    sizes = set()
    for rel_json, rel_dir in checks:
        data = _load(synthetic_world, rel_json)
        on_disk = sorted(p.name for p in (synthetic_world / rel_dir).iterdir())
        assert sorted(im["file_name"] for im in data["images"]) == on_disk
        for im in data["images"]:
            with Image.open(synthetic_world / rel_dir / im["file_name"]) as pic:
                assert pic.format == "JPEG" and pic.size == (im["width"], im["height"])
            sizes.update((im["width"], im["height"]))
    assert min(sizes) >= 192 and max(sizes) <= 384 and len(sizes) > 20


@pytest.mark.parametrize("rel_json,rel_img,rel_png", PANOPTIC)
def test_panoptic_pngs_agree_with_json(synthetic_world, rel_json, rel_img, rel_png):
    data = _load(synthetic_world, rel_json)
    cats = {c["id"]: c for c in data["categories"]}
    assert all(set(c) >= {"id", "name", "supercategory", "isthing", "color"} for c in cats.values())
    images = {im["id"]: im for im in data["images"]}
    assert len(data["annotations"]) == len(images)
    crowd = 0
    for ann in data["annotations"]:
        ids = _png_ids(synthetic_world / rel_png / ann["file_name"])
        im = images[ann["image_id"]]
        assert ids.shape == (im["height"], im["width"])
        listed = {s["id"] for s in ann["segments_info"]}
        assert set(np.unique(ids).tolist()) - {0} == listed
        for s in ann["segments_info"]:
            mask = ids == s["id"]
            assert s["area"] == int(mask.sum())
            assert s["bbox"] == _brute_bbox(mask)
            assert s["category_id"] in cats
            if s["iscrowd"]:
                crowd += 1
                assert cats[s["category_id"]]["isthing"] == 1
        stuff = [cats[s["category_id"]]["name"] for s in ann["segments_info"]
                 if not cats[s["category_id"]]["isthing"]]
        assert len(stuff) == len(set(stuff))  # one segment per stuff class, as in COCO
    if "train2017" in rel_json:
        assert 0 < crowd < sum(len(a["segments_info"]) for a in data["annotations"]) // 10


def test_detection_and_captions_load_with_pycocotools(synthetic_world):
    boxes = COCO(str(synthetic_world / "objects365/annotations/train.json"))
    truth = COCO(str(synthetic_world / "objects365/truth/train_masks.json"))
    assert sorted(boxes.getAnnIds()) == sorted(truth.getAnnIds()) and len(boxes.getAnnIds()) > 96
    assert boxes.getImgIds() == truth.getImgIds()
    for aid in boxes.getAnnIds():
        b, t = boxes.anns[aid], truth.anns[aid]
        assert "segmentation" not in b
        assert (b["image_id"], b["category_id"], b["bbox"]) == (t["image_id"], t["category_id"], t["bbox"])
        assert b["area"] == b["bbox"][2] * b["bbox"][3]
        mask = truth.annToMask(t).astype(bool)
        assert t["area"] == int(mask.sum())
        assert t["bbox"] == [float(v) for v in _brute_bbox(mask)]
        assert list(mask_utils.toBbox(t["segmentation"])) == t["bbox"]
    pan_train = _load(synthetic_world, PANOPTIC[0][0])
    o365_names = {c["name"] for c in boxes.loadCats(boxes.getCatIds())}
    pan_things = {c["name"] for c in pan_train["categories"] if c["isthing"]}
    assert len(o365_names) > len(pan_things) and o365_names & pan_things

    caps = COCO(str(synthetic_world / "coco_panoptic/annotations/captions_train2017.json"))
    assert sorted(caps.getImgIds()) == sorted(im["id"] for im in pan_train["images"])
    names = {c["id"]: c["name"] for c in pan_train["categories"]}
    for ann in pan_train["annotations"]:
        texts = [a["caption"] for a in caps.imgToAnns[ann["image_id"]]]
        assert 2 <= len(texts) <= 5
        for s in ann["segments_info"]:   # every class shown is named in some caption
            assert _mentions(texts, names[s["category_id"]]), (ann["image_id"], names[s["category_id"]])
    it = COCO(str(synthetic_world / "image_text/annotations/captions.json"))
    assert len(it.getImgIds()) == 96 and len(it.getAnnIds()) >= 2 * 96


def test_lvis_loads_with_lvis_api_and_frequencies_follow_training(synthetic_world):
    api = LVIS(str(synthetic_world / "lvis/lvis_v1_val.json"))
    world = _load(synthetic_world, "world.json")
    assert len(api.get_img_ids()) == 16 and len(api.get_ann_ids()) > 16
    for img in api.load_imgs(api.get_img_ids()):
        assert re.fullmatch(r"http://images\.cocodataset\.org/val2017/\d{12}\.jpg", img["coco_url"])
        assert (synthetic_world / "lvis/val2017" / img["coco_url"].rsplit("/", 1)[1]).is_file()
        present = {a["category_id"] for a in api.load_anns(api.get_ann_ids(img_ids=[img["id"]]))}
        assert img["neg_category_ids"] and not present & set(img["neg_category_ids"])
        assert set(img["not_exhaustive_category_ids"]) <= present
    for ann in api.load_anns(api.get_ann_ids()):
        mask = api.ann_to_mask(ann).astype(bool)
        assert ann["area"] == int(mask.sum())
        assert ann["bbox"] == [float(v) for v in _brute_bbox(mask)]
    # r/c/f from training image counts with the thresholds world.json documents.
    counts = _training_classes(synthetic_world)
    rule = world["lvis_frequency"]
    n_train = 48 + 96
    assert rule["training_images"] == n_train
    assert rule["rare_max"] == max(1, int(0.02 * n_train)) and rule["common_max"] == int(0.1 * n_train)
    by_freq = defaultdict(int)
    for cat in api.load_cats(api.get_cat_ids()):
        n = counts.get(_norm(cat["name"]), 0)
        assert cat["image_count"] == n
        expect = "r" if n <= rule["rare_max"] else "c" if n <= rule["common_max"] else "f"
        assert cat["frequency"] == expect, cat["name"]
        by_freq[cat["frequency"]] += 1
    assert all(by_freq[f] > 0 for f in "rcf") and dict(by_freq) == rule["counts"]
    names = [c["name"] for c in sorted(api.load_cats(None), key=lambda c: c["id"])]
    assert names == sorted(names) and api.load_cats([1])[0]["id"] == 1


def test_unseen_classes_are_bookkept_and_taught_by_captions(synthetic_world):
    world = _load(synthetic_world, "world.json")
    trained = set(_training_classes(synthetic_world))
    ade = _load(synthetic_world, "ade20k_panoptic/ade20k_panoptic_val.json")
    ade_cats = {c["id"]: c for c in ade["categories"]}
    lvis = _load(synthetic_world, "lvis/lvis_v1_val.json")
    lvis_names = {c["id"]: _norm(c["name"]) for c in lvis["categories"]}
    unseen_things = {c["name"] for c in ade_cats.values() if c["isthing"]} | set(lvis_names.values())
    unseen_things -= trained
    unseen_stuff = {c["name"] for c in ade_cats.values() if not c["isthing"]} - trained
    assert unseen_things and unseen_stuff
    assert sorted(trained) == world["classes"]["training_annotated"]
    assert sorted(unseen_things) == world["classes"]["unseen_things"]
    assert sorted(unseen_stuff) == world["classes"]["unseen_stuff"]
    # They are annotated in the evaluation splits...
    ade_seen = {ade_cats[s["category_id"]]["name"] for a in ade["annotations"] for s in a["segments_info"]}
    lvis_seen = {lvis_names[a["category_id"]] for a in lvis["annotations"]}
    assert unseen_stuff <= ade_seen and (unseen_things & ade_seen) and (unseen_things & lvis_seen)
    # ... and every one of them is named by some image-text caption.
    captions = [a["caption"] for a in _load(synthetic_world, "image_text/annotations/captions.json")["annotations"]]
    for name in unseen_things | unseen_stuff:
        assert _mentions(captions, name), name
    # Unseen things are new combinations of words that training class names use.
    train_words = {w for n in trained for w in n.split()}
    assert all(set(n.split()) <= train_words for n in unseen_things)
    # Vocabularies in world.json are those of the files.
    assert sorted(world["vocabularies"]["ade20k_panoptic"]["things"]) == sorted(
        c["name"] for c in ade["categories"] if c["isthing"])
    assert sorted(world["vocabularies"]["ade20k_panoptic"]["stuff"]) == sorted(
        c["name"] for c in ade["categories"] if not c["isthing"])
    assert sorted(world["vocabularies"]["lvis"]["things"]) == sorted(lvis_names.values())


def test_each_dataset_has_its_own_id_space(synthetic_world):
    pan = _load(synthetic_world, PANOPTIC[0][0])["categories"]
    ade = _load(synthetic_world, "ade20k_panoptic/ade20k_panoptic_val.json")
    lvis = _load(synthetic_world, "lvis/lvis_v1_val.json")["categories"]
    o365 = _load(synthetic_world, "objects365/annotations/train.json")["categories"]
    assert min(c["id"] for c in ade["categories"]) == 0
    assert all(isinstance(im["id"], str) and im["id"].startswith("ADE_val_") for im in ade["images"])
    assert min(c["id"] for c in lvis) == 1 and min(c["id"] for c in o365) == 1
    pan_ids = {c["name"]: c["id"] for c in pan}
    for other in (ade["categories"], lvis, o365):
        shared = [c for c in other if _norm(c["name"]) in pan_ids]
        assert shared and any(c["id"] != pan_ids[_norm(c["name"])] for c in shared)
    for cats in (pan, ade["categories"]):  # panoptic display colours are distinct
        assert len({tuple(c["color"]) for c in cats}) == len(cats)


def _tree_hash(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    sizes = WorldSizes(4, 2, 4, 4, 2, 2, 3)  # pretrain_corpus: 3 images and their captions JSON
    generate_world(tmp_path / "a", seed=7, sizes=sizes)
    # The second copy comes from the CLI in a fresh interpreter with another string-hash
    # seed, so nothing may depend on set or dict iteration order.
    cmd = [sys.executable, "-m", "vloss.data.synthetic", "--out", str(tmp_path / "b"), "--seed", "7"]
    cmd += [f"--n={k}={v}" for k, v in asdict(sizes).items()]
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run(cmd, check=True, env=env, cwd=REPO, capture_output=True)
    generate_world(tmp_path / "c", seed=8, sizes=sizes)
    ha, hb, hc = (_tree_hash(tmp_path / k) for k in "abc")
    assert ha == hb and len(ha) == 9 + 4 + 4 + 2 + 2 + 4 + 4 + 2 + 2 + 2 + (1 + 3)
    assert ha.keys() == hc.keys()
    differ = [k for k in ha if ha[k] != hc[k]]
    assert any(k.endswith(".jpg") for k in differ) and any(k.endswith(".png") for k in differ)


def test_cli_sizes_summary_and_refusal(tmp_path, capsys):
    out = tmp_path / "w"
    args = ["--out", str(out), "--seed", "3"] + [f"--n={k}=1" for k in
                                                  ("coco_panoptic_train", "coco_panoptic_val", "objects365_train",
                                                   "image_text", "ade20k_val", "lvis_val", "pretrain_corpus")]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "coco_panoptic_train" in printed and "unseen" in printed
    world = _load(out, "world.json")
    assert world["seed"] == 3 and set(world["sizes"].values()) == {1} and world["size_preset"] == "custom"
    with pytest.raises(FileExistsError):
        generate_world(out, seed=3, sizes=WorldSizes(1, 1, 1, 1, 1, 1))
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "x"), "--n", "no_such_split=3"])
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "x"), "--n", "lvis_val"])


def test_an_interrupted_generation_leaves_nothing_a_rerun_would_trust(tmp_path, monkeypatch):
    """Defect 6 of issue #15: a run killed while writing the world could not be re-run. The world is
    staged beside its folder and moved into place complete; a re-run starts over."""
    import vloss.data.synthetic.world as world_mod
    from vloss.data.synthetic import WorldSizes, generate_world, load_world

    sizes = WorldSizes(coco_panoptic_train=2, coco_panoptic_val=1, objects365_train=2, image_text=1,
                       ade20k_val=1, lvis_val=1, pretrain_corpus=2)

    def killed(*a, **k):
        raise KeyboardInterrupt("killed while writing LVIS")

    monkeypatch.setattr(world_mod, "write_lvis", killed)
    with pytest.raises(KeyboardInterrupt):
        generate_world(tmp_path / "w", 0, sizes)
    assert not (tmp_path / "w").exists() and not list(tmp_path.glob(".w.partial-*"))
    monkeypatch.undo()
    generate_world(tmp_path / "w", 0, sizes)
    assert load_world(tmp_path / "w")["sizes"]["lvis_val"] == 1
