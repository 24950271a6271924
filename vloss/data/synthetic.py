"""The synthetic omni-supervised world: every dataset the system consumes, in its real layout.

    python -m vloss.data.synthetic --out DIR [--seed 0] [--size small|medium]
                                   [--n coco_panoptic_train=100 ...] [--overwrite]

writes the tree of ``docs/DATA_LAYOUT.md`` (COCO panoptic + captions, Objects365 boxes
with hidden true masks, image-text pairs, ADE20K panoptic val, LVIS v1 val, and
``world.json``). The same seed gives byte-identical files; every image is drawn from a
generator seeded by (seed, split, image index).

Seen and unseen classes: the training splits (COCO panoptic train + Objects365) annotate
only the designed-seen classes; ADE20K and LVIS add unseen things (new colour x shape
combinations) and unseen stuff; the image-text captions mention every class of the world.
``world.json`` records the classes actually annotated in training and, from them, which
evaluation classes are unseen.

LVIS frequency (r/c/f). LVIS calls a class rare in 1-10 training images, common in 11-100
and frequent above 100, out of ~100k training images. Absolute thresholds would make every
class of a small world rare, and proportional ones (0.01% / 0.1%) would make every class
frequent, so the thresholds are fractions of the number ``N`` of training images
(panoptic train + Objects365), chosen so that a small world's long tail fills all three
buckets: ``rare_max = max(1, floor(0.02 N))``, ``common_max = max(rare_max + 1, floor(0.1 N))``;
rare: count <= rare_max (never-seen classes, count 0, are rare), common: count <= common_max,
frequent: above. ``image_count`` / ``instance_count`` in the LVIS categories are these
training counts; ``world.json`` records N and both thresholds.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from PIL import Image

from vloss.data.errors import DataFormatError
from vloss.data.masks import id2rgb
from vloss.data.synthetic_splits import (
    ade_categories, compose, draw_recipe, image_rng, instance_annotations, lvis_categories,
    lvis_name, make_captions, objects365_categories, panoptic_categories, panoptic_segments,
    present_classes)
from vloss.data.synthetic_vocab import build_vocabulary

GENERATOR_VERSION = 1
RARE_FRACTION = 0.02    # LVIS r/c/f thresholds as fractions of the training images
COMMON_FRACTION = 0.1

# Every path of the layout, relative to the world root (docs/DATA_LAYOUT.md).
PATHS = {
    "coco_panoptic": {
        "root": "coco_panoptic",
        "train_images": "coco_panoptic/train2017",
        "val_images": "coco_panoptic/val2017",
        "train_json": "coco_panoptic/annotations/panoptic_train2017.json",
        "train_png_dir": "coco_panoptic/annotations/panoptic_train2017",
        "val_json": "coco_panoptic/annotations/panoptic_val2017.json",
        "val_png_dir": "coco_panoptic/annotations/panoptic_val2017",
        "train_captions": "coco_panoptic/annotations/captions_train2017.json",
    },
    "objects365": {
        "root": "objects365",
        "train_images": "objects365/images/train",
        "train_json": "objects365/annotations/train.json",
        "train_truth_masks": "objects365/truth/train_masks.json",
    },
    "image_text": {
        "root": "image_text",
        "images": "image_text/images",
        "captions": "image_text/annotations/captions.json",
    },
    "ade20k_panoptic": {
        "root": "ade20k_panoptic",
        "val_images": "ade20k_panoptic/images/validation",
        "val_json": "ade20k_panoptic/ade20k_panoptic_val.json",
        "val_png_dir": "ade20k_panoptic/ade20k_panoptic_val",
    },
    "lvis": {
        "root": "lvis",
        "val_images": "lvis/val2017",
        "val_json": "lvis/lvis_v1_val.json",
    },
}


@dataclass
class WorldSizes:
    """Number of images per split.

    Args:
        coco_panoptic_train: COCO-panoptic train images (also the captioned images).
        coco_panoptic_val: COCO-panoptic val images.
        objects365_train: Objects365 detection images.
        image_text: extra image-caption pairs.
        ade20k_val: ADE20K-panoptic val images.
        lvis_val: LVIS v1 val images.
    """

    coco_panoptic_train: int = 48
    coco_panoptic_val: int = 12
    objects365_train: int = 96
    image_text: int = 96
    ade20k_val: int = 16
    lvis_val: int = 16

    @classmethod
    def preset(cls, name: str) -> "WorldSizes":
        """``small`` (default, seconds) or ``medium`` (about 4x)."""
        if name == "small":
            return cls()
        if name == "medium":
            return cls(200, 50, 400, 400, 64, 64)
        raise ValueError(f"unknown size preset {name!r} (small|medium)")

    def override(self, items: dict[str, int]) -> "WorldSizes":
        """A copy with some splits resized; unknown names and negatives raise."""
        known = {f.name for f in fields(self)}
        values = asdict(self)
        for key, value in items.items():
            if key not in known:
                raise ValueError(f"unknown split {key!r}; expected one of {sorted(known)}")
            if int(value) < 0:
                raise ValueError(f"split {key!r} needs a non-negative size, got {value}")
            values[key] = int(value)
        return WorldSizes(**values)


def _save_jpeg(path: Path, image: np.ndarray) -> None:
    Image.fromarray(image).save(path, format="JPEG", quality=90)


def _save_png(path: Path, ids: np.ndarray) -> None:
    Image.fromarray(id2rgb(ids)).save(path, format="PNG")


def _dump(path: Path, obj: dict, indent: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=indent)


def _info(name: str, seed: int) -> dict:
    return {"description": f"VLOSS synthetic world: {name}", "version": str(GENERATOR_VERSION),
            "year": 2026, "contributor": "vloss.data.synthetic", "seed": seed}


_LICENSES = [{"id": 1, "name": "CC0 (generated)", "url": ""}]


class _Counter:
    """Training image / instance counts per class name."""

    def __init__(self) -> None:
        self.images: dict[str, int] = {}
        self.instances: dict[str, int] = {}

    def add(self, names: list[str]) -> None:
        for n in set(names):
            self.images[n] = self.images.get(n, 0) + 1
        for n in names:
            self.instances[n] = self.instances.get(n, 0) + 1


def _panoptic_split(root: Path, split: str, n: int, seed: int, vocab, counter: _Counter | None,
                    captions: list | None, image_dir: str, png_dir: str, json_path: str,
                    cats: list[dict], id_base: int, name: str, ade: bool = False) -> dict:
    """Write one panoptic split (COCO or ADE style) and return its JSON."""
    (root / image_dir).mkdir(parents=True, exist_ok=True)
    (root / png_dir).mkdir(parents=True, exist_ok=True)
    cat_ids = {c["name"]: c["id"] for c in cats}
    colours = {c["name"]: c["color"] for c in cats}
    things = tuple(c["name"] for c in cats if c["isthing"])
    stuff = tuple(c["name"] for c in cats if not c["isthing"])
    if ade:
        unseen = [c for c in vocab.unseen_things + vocab.unseen_stuff if c in cat_ids]
    images, anns = [], []
    for i in range(n):
        rng = image_rng(seed, name, i)
        if ade:
            forced = [unseen[i % len(unseen)]]
            recipe = draw_recipe(rng, things, stuff, (2, 6), forced, 0.0, 0.5, zipf=0.6)
        else:
            forced = [things[i % len(things)], stuff[i % len(stuff)]]
            recipe = draw_recipe(rng, things, stuff, (2, 6), forced, 0.12, 0.15)
        scene = compose(rng, recipe)
        ids, infos = panoptic_segments(rng, scene, cat_ids, colours)
        if ade:
            image_id = f"ADE_val_{i + 1:08d}"
            stem = image_id
        else:
            image_id = id_base + i + 1
            stem = f"{image_id:012d}"
        h, w = ids.shape
        _save_jpeg(root / image_dir / f"{stem}.jpg", scene.image)
        _save_png(root / png_dir / f"{stem}.png", ids)
        img = {"id": image_id, "file_name": f"{stem}.jpg", "height": h, "width": w}
        if not ade:
            img.update(license=1, coco_url=f"http://images.cocodataset.org/{split}/{stem}.jpg",
                       date_captured="2026-01-01 00:00:00")
        images.append(img)
        anns.append({"image_id": image_id, "file_name": f"{stem}.png", "segments_info": infos})
        if counter is not None:
            counter.add([s.name for s in scene.segments])
        if captions is not None:
            captions.append((img, make_captions(rng, scene)))
    data = {"info": _info(name, seed), "licenses": _LICENSES, "images": images,
            "annotations": anns, "categories": cats}
    _dump(root / json_path, data)
    return data


def _captions_json(pairs: list, name: str, seed: int, first_id: int) -> dict:
    anns = []
    for img, caps in pairs:
        for c in caps:
            anns.append({"id": first_id + len(anns), "image_id": img["id"], "caption": c})
    return {"info": _info(name, seed), "licenses": _LICENSES,
            "images": [img for img, _ in pairs], "annotations": anns}


def generate_world(out: str | Path, seed: int = 0, sizes: WorldSizes | None = None,
                   size_preset: str = "small", overwrite: bool = False) -> dict:
    """Write the synthetic world under ``out`` and return its summary.

    Args:
        out: output directory (created; must be empty unless ``overwrite``).
        seed: world seed; the same seed gives byte-identical files.
        sizes: images per split (default: the ``size_preset``).
        size_preset: name recorded in world.json when ``sizes`` is None.
        overwrite: remove this generator's outputs in ``out`` first.

    Returns:
        The summary dict (also printed by the CLI): counts per split, vocabulary sizes,
        seen / unseen classes.
    """
    root = Path(out)
    sizes = sizes or WorldSizes.preset(size_preset)
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{root} is not empty (pass overwrite=True / --overwrite)")
        for sub in [v["root"] for v in PATHS.values()]:
            shutil.rmtree(root / sub, ignore_errors=True)
        (root / "world.json").unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    vocab = build_vocabulary()
    train = _Counter()

    # COCO panoptic train (+ captions) and val.
    p = PATHS["coco_panoptic"]
    pan_cats = panoptic_categories(vocab)
    pan_captions: list = []
    pan_train = _panoptic_split(root, "train2017", sizes.coco_panoptic_train, seed, vocab, train,
                                pan_captions, p["train_images"], p["train_png_dir"], p["train_json"],
                                pan_cats, 100000, "coco_panoptic_train")
    _dump(root / p["train_captions"], _captions_json(pan_captions, "coco_captions_train", seed, 1))
    pan_val = _panoptic_split(root, "val2017", sizes.coco_panoptic_val, seed, vocab, None, None,
                              p["val_images"], p["val_png_dir"], p["val_json"], pan_cats, 200000,
                              "coco_panoptic_val")

    # Objects365: boxes only; stuff visible but never annotated; true masks kept aside.
    p = PATHS["objects365"]
    o_cats = objects365_categories(vocab)
    o_ids = {c["name"]: c["id"] for c in o_cats}
    (root / p["train_images"]).mkdir(parents=True, exist_ok=True)
    o_images, o_boxes, o_masks = [], [], []
    for i in range(sizes.objects365_train):
        rng = image_rng(seed, "objects365_train", i)
        forced = [vocab.objects365_things[i % len(vocab.objects365_things)]]
        recipe = draw_recipe(rng, vocab.objects365_things, vocab.panoptic_stuff, (3, 8), forced,
                             zipf=1.1)
        scene = compose(rng, recipe)
        file_name = f"objects365_v2_{i + 1:08d}.jpg"
        _save_jpeg(root / p["train_images"] / file_name, scene.image)
        h, w = scene.label.shape
        o_images.append({"id": i + 1, "file_name": file_name, "height": h, "width": w, "license": 1})
        truth = instance_annotations(scene, i + 1, o_ids, len(o_masks) + 1, with_masks=True)
        o_masks += truth
        o_boxes += instance_annotations(scene, i + 1, o_ids, len(o_boxes) + 1, with_masks=False)
        train.add([s.name for s in scene.segments if s.isthing])
    base = {"info": _info("objects365_train", seed), "licenses": _LICENSES, "images": o_images,
            "categories": o_cats}
    _dump(root / p["train_json"], {**base, "annotations": o_boxes})
    _dump(root / p["train_truth_masks"], {**base, "annotations": o_masks})

    # Image-text pairs over the whole vocabulary (every class is shown and named).
    p = PATHS["image_text"]
    (root / p["images"]).mkdir(parents=True, exist_ok=True)
    every = list(vocab.all_things) + list(vocab.all_stuff)
    it_pairs, mentioned = [], set()
    for i in range(sizes.image_text):
        rng = image_rng(seed, "image_text", i)
        recipe = draw_recipe(rng, vocab.all_things, vocab.all_stuff, (1, 5),
                             [every[i % len(every)]], zipf=0.3)
        scene = compose(rng, recipe)
        image_id = 300000 + i + 1
        h, w = scene.label.shape
        img = {"id": image_id, "file_name": f"{image_id:012d}.jpg", "height": h, "width": w,
               "license": 1}
        _save_jpeg(root / p["images"] / img["file_name"], scene.image)
        it_pairs.append((img, make_captions(rng, scene)))
        mentioned.update(present_classes(scene))
    _dump(root / p["captions"], _captions_json(it_pairs, "image_text", seed, 1))

    # ADE20K panoptic val: own 0-based ids, string image ids, unseen things and stuff.
    p = PATHS["ade20k_panoptic"]
    ade = _panoptic_split(root, "validation", sizes.ade20k_val, seed, vocab, None, None,
                          p["val_images"], p["val_png_dir"], p["val_json"], ade_categories(vocab),
                          0, "ade20k_val", ade=True)

    # LVIS v1 val: r/c/f from the training counts.
    n_train = sizes.coco_panoptic_train + sizes.objects365_train
    rare_max = max(1, math.floor(RARE_FRACTION * n_train))
    common_max = max(rare_max + 1, math.floor(COMMON_FRACTION * n_train))
    l_cats = lvis_categories(vocab, train.images, train.instances, rare_max, common_max)
    lvis = _write_lvis(root, seed, sizes.lvis_val, vocab, l_cats)

    # Bookkeeping.
    annotated = set(train.images)
    eval_things = sorted(set(vocab.ade_things) | set(vocab.lvis_things))
    eval_stuff = sorted(vocab.ade_stuff)
    unseen_things = [n for n in eval_things if n not in annotated]
    unseen_stuff = [n for n in eval_stuff if n not in annotated]
    freq = {k: sum(c["frequency"] == k for c in l_cats) for k in "rcf"}
    counts = {
        "coco_panoptic_train": {"images": len(pan_train["images"]),
                                "segments": sum(len(a["segments_info"]) for a in pan_train["annotations"]),
                                "captions": sum(len(c) for _, c in pan_captions)},
        "coco_panoptic_val": {"images": len(pan_val["images"]),
                              "segments": sum(len(a["segments_info"]) for a in pan_val["annotations"])},
        "objects365_train": {"images": len(o_images), "boxes": len(o_boxes)},
        "image_text": {"images": len(it_pairs), "captions": sum(len(c) for _, c in it_pairs)},
        "ade20k_val": {"images": len(ade["images"]),
                       "segments": sum(len(a["segments_info"]) for a in ade["annotations"])},
        "lvis_val": {"images": len(lvis["images"]), "instances": len(lvis["annotations"])},
    }
    world = {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "size_preset": size_preset if sizes == WorldSizes.preset(size_preset) else "custom",
        "sizes": asdict(sizes),
        "paths": PATHS,
        "counts": counts,
        "vocabularies": {
            "coco_panoptic": {"things": list(vocab.panoptic_things), "stuff": list(vocab.panoptic_stuff)},
            "objects365": {"things": list(vocab.objects365_things)},
            "ade20k_panoptic": {"things": list(vocab.ade_things), "stuff": list(vocab.ade_stuff)},
            "lvis": {"things": list(vocab.lvis_things),
                     "note": "lvis_v1_val.json spells names with underscores"},
            "image_text": {"classes": sorted(mentioned), "words": list(vocab.words())},
        },
        "classes": {
            "training_annotated": sorted(annotated),
            "training_splits": ["coco_panoptic_train", "objects365_train"],
            "unseen_things": unseen_things,
            "unseen_stuff": unseen_stuff,
            "designed_unseen_things": list(vocab.unseen_things),
            "designed_unseen_stuff": list(vocab.unseen_stuff),
            "unseen_mentioned_in_image_text": sorted(set(unseen_things + unseen_stuff) & mentioned),
        },
        "lvis_frequency": {
            "rule": "image count over training images (coco_panoptic_train + objects365_train): "
                    "rare <= rare_max (0 included), common <= common_max, frequent above; "
                    "rare_max = max(1, floor(0.02 N)), common_max = max(rare_max + 1, floor(0.1 N))",
            "training_images": n_train, "rare_max": rare_max, "common_max": common_max,
            "counts": freq,
        },
    }
    _dump(root / "world.json", world, indent=2)
    return {
        "seed": seed, "sizes": asdict(sizes), "counts": counts,
        "vocab_sizes": {"coco_panoptic": len(pan_cats), "objects365": len(o_cats),
                        "ade20k_panoptic": len(ade["categories"]), "lvis": len(l_cats),
                        "words": len(vocab.words())},
        "seen_classes": len(annotated), "unseen_things": len(unseen_things),
        "unseen_stuff": len(unseen_stuff), "lvis_frequency": freq,
    }


def _write_lvis(root: Path, seed: int, n: int, vocab, cats: list[dict]) -> dict:
    """LVIS v1 val: RLE masks, negative and not-exhaustive category lists."""
    p = PATHS["lvis"]
    (root / p["val_images"]).mkdir(parents=True, exist_ok=True)
    by_name = {c["name"]: c["id"] for c in cats}
    cat_ids = {name: by_name[lvis_name(name)] for name in vocab.lvis_things}
    things = tuple(vocab.lvis_things)
    images, anns = [], []
    for i in range(n):
        rng = image_rng(seed, "lvis_val", i)
        forced = [vocab.unseen_things[i % len(vocab.unseen_things)]]
        recipe = draw_recipe(rng, things, vocab.all_stuff, (2, 7), forced, zipf=0.6)
        scene = compose(rng, recipe)
        image_id = 400000 + i + 1
        stem = f"{image_id:012d}"
        _save_jpeg(root / p["val_images"] / f"{stem}.jpg", scene.image)
        inst = instance_annotations(scene, image_id, cat_ids, 0, with_masks=True)
        not_exhaustive = []
        per_cat: dict[int, list[dict]] = {}
        for a in inst:
            per_cat.setdefault(a["category_id"], []).append(a)
        for cid, group in per_cat.items():
            if len(group) >= 2 and rng.random() < 0.3:
                not_exhaustive.append(cid)   # one instance left unannotated, as LVIS allows
                inst.remove(group[-1])
        present = set(per_cat)
        absent = [c["id"] for c in cats if c["id"] not in present]
        neg = sorted(int(v) for v in rng.choice(absent, size=int(rng.integers(1, 5)), replace=False))
        for a in inst:
            del a["iscrowd"]
            a["id"] = len(anns) + 1
            anns.append(a)
        h, w = scene.label.shape
        images.append({"id": image_id, "height": h, "width": w, "license": 1,
                       "coco_url": f"http://images.cocodataset.org/val2017/{stem}.jpg",
                       "flickr_url": "", "date_captured": "2026-01-01 00:00:00",
                       "neg_category_ids": neg, "not_exhaustive_category_ids": sorted(not_exhaustive)})
    data = {"info": _info("lvis_v1_val", seed), "licenses": _LICENSES, "images": images,
            "annotations": anns, "categories": cats}
    _dump(root / p["val_json"], data)
    return data


def load_world(root: str | Path) -> dict:
    """Read ``world.json`` of a generated world, with every path made absolute.

    Args:
        root: the world directory (``--out``).

    Returns:
        The world.json contents; ``paths[dataset][key]`` are absolute :class:`Path` objects.
    """
    root = Path(root).resolve()
    path = root / "world.json"
    try:
        with open(path) as f:
            world = json.load(f)
        world["paths"] = {ds: {k: root / v for k, v in group.items()}
                          for ds, group in world["paths"].items()}
    except (json.JSONDecodeError, KeyError, AttributeError, TypeError) as e:
        raise DataFormatError(path, f"not a synthetic world index: {e!r}", field="paths") from e
    return world


def format_summary(summary: dict) -> str:
    """A few human-readable lines."""
    lines = [f"synthetic world (seed {summary['seed']})"]
    for split, c in summary["counts"].items():
        lines.append(f"  {split:<20} " + ", ".join(f"{k} {v}" for k, v in c.items()))
    lines.append("  vocabulary sizes: " + ", ".join(f"{k} {v}" for k, v in summary["vocab_sizes"].items()))
    lines.append(f"  seen classes (training annotations): {summary['seen_classes']}; unseen in "
                 f"ADE/LVIS: {summary['unseen_things']} things, {summary['unseen_stuff']} stuff")
    lines.append("  LVIS frequency: " + ", ".join(f"{k} {v}" for k, v in summary["lvis_frequency"].items()))
    return "\n".join(lines)


def _parse_n(items: list[str]) -> dict[str, int]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not value.strip().lstrip("-").isdigit():
            raise argparse.ArgumentTypeError(f"--n expects SPLIT=INT, got {item!r}")
        out[key.strip()] = int(value)
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(prog="python -m vloss.data.synthetic", description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", choices=["small", "medium"], default="small")
    ap.add_argument("--n", action="append", default=[], metavar="SPLIT=INT",
                    help=f"images of one split (repeatable); splits: "
                         f"{', '.join(f.name for f in fields(WorldSizes))}")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing world in --out")
    args = ap.parse_args(argv)
    try:
        sizes = WorldSizes.preset(args.size).override(_parse_n(args.n))
    except (ValueError, argparse.ArgumentTypeError) as e:
        ap.error(str(e))
    summary = generate_world(args.out, args.seed, sizes, args.size, args.overwrite)
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
