"""Category tables, captions, per-image annotation and training class counts of the synthetic world.

Each dataset of the world keeps its own category-id space, as the real ones do:

* COCO panoptic: things 1..24, stuff 101..108 (in vocabulary order).
* Objects365: 1..48 in alphabetical order of the names.
* ADE20K panoptic: 0-based ids with stuff and things interleaved, as the usual
  ADE20K-150 -> COCO-panoptic conversion lists them; image ids are strings
  (``"ADE_val_00000001"``), as that conversion writes them.
* LVIS: 1-based ids in alphabetical order of the (underscored) names, as LVIS
  numbers its synsets; names use underscores (``"purple_star"``).

Scenes are drawn per image from a generator seeded by (world seed, split, index),
so each image is a deterministic function of the seed alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vloss.data.masks import encode_rle, mask_to_bbox, rgb2id
from vloss.data.synthetic.render import Scene, compose_scene
from vloss.data.synthetic.vocab import COLOURS, SHAPES, STUFF, WorldVocabulary, class_colour, plural, split_thing_name

SPLIT_CODES = {
    "coco_panoptic_train": 1, "coco_panoptic_val": 2, "objects365_train": 3,
    "image_text": 4, "ade20k_val": 5, "lvis_val": 6, "pretrain_corpus": 7,
}

_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of one image: a function of (seed, split, index) only."""
    return np.random.default_rng(np.random.SeedSequence([seed, SPLIT_CODES[split], index]))


def zipf_weights(n: int, exponent: float = 1.0) -> np.ndarray:
    """Long-tailed class sampling weights [n] (the first class is the most common)."""
    w = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
    return w / w.sum()


# ----------------------------------------------------------------------------- categories

def category_colour(name: str) -> list[int]:
    """A display colour per category, distinct across the vocabulary."""
    if name in STUFF:
        return list(STUFF[name].colour_a)
    colour, shape = split_thing_name(name)
    s = SHAPES.index(shape)
    base = np.asarray(COLOURS[colour], dtype=np.int64)
    offset = np.array([(s * 37) % 61 - 30, (s * 17) % 61 - 30, (s * 53) % 61 - 30])
    return [int(v) for v in np.clip(base + offset, 0, 255)]


def _thing_category(cid: int, name: str) -> dict:
    _, shape = split_thing_name(name)
    return {"id": cid, "name": name, "supercategory": shape, "isthing": 1,
            "color": category_colour(name)}


def _stuff_category(cid: int, name: str) -> dict:
    return {"id": cid, "name": name, "supercategory": STUFF[name].supercategory,
            "isthing": 0, "color": category_colour(name)}


def panoptic_categories(vocab: WorldVocabulary) -> list[dict]:
    """COCO-panoptic categories: things 1.., stuff 101.."""
    cats = [_thing_category(i + 1, n) for i, n in enumerate(vocab.panoptic_things)]
    cats += [_stuff_category(101 + i, n) for i, n in enumerate(vocab.panoptic_stuff)]
    return cats


def objects365_categories(vocab: WorldVocabulary) -> list[dict]:
    """Objects365 categories: own id space 1..N in name order; no isthing, as Objects365 ships."""
    return [{"id": i + 1, "name": n, "supercategory": split_thing_name(n)[1]}
            for i, n in enumerate(sorted(vocab.objects365_things))]


def ade_categories(vocab: WorldVocabulary) -> list[dict]:
    """ADE20K-panoptic categories: 0-based ids, stuff and things interleaved."""
    order: list[str] = []
    things = list(vocab.ade_things)
    for stuff in vocab.ade_stuff:
        order.append(stuff)
        order += things[:4]
        things = things[4:]
    order += things
    return [_stuff_category(i, n) if n in STUFF else _thing_category(i, n)
            for i, n in enumerate(order)]


def lvis_name(name: str) -> str:
    """LVIS spells multi-word names with underscores."""
    return name.replace(" ", "_")


def lvis_categories(vocab: WorldVocabulary, image_counts: dict[str, int],
                    instance_counts: dict[str, int], rare_max: int, common_max: int) -> list[dict]:
    """LVIS v1 categories with r/c/f set from training image counts.

    Args:
        vocab: the world vocabulary.
        image_counts: class name -> number of training images containing it.
        instance_counts: class name -> number of training instances.
        rare_max: largest image count of a rare class (classes never seen are rare).
        common_max: largest image count of a common class; above it, frequent.
    """
    cats = []
    for i, name in enumerate(sorted(vocab.lvis_things, key=lvis_name)):
        colour, shape = split_thing_name(name)
        n = image_counts.get(name, 0)
        freq = "r" if n <= rare_max else ("c" if n <= common_max else "f")
        cats.append({
            "id": i + 1, "name": lvis_name(name), "synset": f"{lvis_name(name)}.n.01",
            "synonyms": [lvis_name(name), f"{shape}_({colour})"],
            "def": f"a {shape} shape coloured {colour}",
            "frequency": freq, "image_count": n, "instance_count": instance_counts.get(name, 0),
        })
    return cats


# ----------------------------------------------------------------------------- captions

def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def noun_phrase(name: str, count: int) -> str:
    """'a red ring', 'three blue stars', 'an orange cross'."""
    if count == 1:
        return _article(name)
    colour, shape = split_thing_name(name)
    number = _NUMBERS[count] if count < len(_NUMBERS) else "many"
    return f"{number} {colour} {plural(shape)}"


def _join(parts: list[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def make_captions(rng: np.random.Generator, scene: Scene) -> list[str]:
    """2-5 captions naming what the scene shows; the first names every class in it."""
    counts: dict[str, int] = {}
    for seg in scene.segments:
        if seg.isthing:
            counts[seg.name] = counts.get(seg.name, 0) + (len(_NUMBERS) if seg.iscrowd else 1)
    stuff = [s.name for s in scene.segments if not s.isthing]
    phrases = [noun_phrase(n, c) for n, c in counts.items()]
    where = [STUFF[s].phrase for s in stuff]
    if not phrases:
        return [f"a picture of {_join([_article(s) for s in stuff])}.",
                f"nothing but {_join(stuff)}."]
    captions = [f"{_join(phrases)} {_join(where)}."]
    for _ in range(int(rng.integers(1, 5))):
        k = int(rng.integers(1, len(phrases) + 1))
        subset = [phrases[i] for i in sorted(rng.choice(len(phrases), size=k, replace=False))]
        kind = int(rng.integers(0, 4))
        if kind == 0:
            captions.append(f"a picture of {_join(subset)} {where[int(rng.integers(len(where)))]}.")
        elif kind == 1 and len(phrases) > 1:
            other = phrases[int(rng.integers(len(phrases)))]
            captions.append(f"{subset[0]} next to {other}.")
        elif kind == 2:
            captions.append(f"there is {_join(subset)} in this image.")
        else:
            captions.append(f"a scene with {_join(stuff)}, showing {_join(subset)}.")
    return captions


# ----------------------------------------------------------------------------- scenes

@dataclass
class SceneRecipe:
    """What one image shows before it is composed.

    Args:
        height, width: image size.
        stuff: stuff classes (top to bottom).
        things: thing classes to place.
        crowd: class of a crowd segment, or None.
        void_blobs: number of unlabelled blobs.
    """

    height: int
    width: int
    stuff: list[str]
    things: list[str]
    crowd: str | None = None
    void_blobs: int = 0


def draw_recipe(rng: np.random.Generator, things: tuple[str, ...], stuff: tuple[str, ...],
                n_things: tuple[int, int], forced: list[str] = (), crowd_prob: float = 0.0,
                void_prob: float = 0.0, zipf: float = 1.0) -> SceneRecipe:
    """Draw a recipe: size 192-384 px per side, 1-3 stuff bands, long-tailed things.

    Args:
        rng: the image's generator.
        things: thing vocabulary to draw from (most common first).
        stuff: stuff vocabulary.
        n_things: inclusive range of the number of things.
        forced: classes that must be attempted (thing or stuff names).
        crowd_prob: chance of one crowd segment.
        void_prob: chance of 1-2 void blobs.
        zipf: exponent of the long-tailed thing distribution.
    """
    height, width = (int(v) for v in rng.integers(192, 385, size=2))
    forced_stuff = [f for f in forced if f in STUFF]
    forced_things = [f for f in forced if f not in STUFF]
    k = int(rng.integers(1, 4))
    pool = [s for s in stuff if s not in forced_stuff]
    picked = forced_stuff + [pool[i] for i in rng.choice(len(pool), size=max(0, k - len(forced_stuff)),
                                                         replace=False)]
    rng.shuffle(picked)
    if "sky" in picked:  # the sky goes on top
        picked.remove("sky")
        picked.insert(0, "sky")
    n = int(rng.integers(n_things[0], n_things[1] + 1))
    drawn = [things[i] for i in rng.choice(len(things), size=n, p=zipf_weights(len(things), zipf))]
    crowd = None
    if crowd_prob and rng.random() < crowd_prob:
        crowd = things[int(rng.choice(len(things), p=zipf_weights(len(things), zipf)))]
    voids = int(rng.integers(1, 3)) if void_prob and rng.random() < void_prob else 0
    return SceneRecipe(height, width, picked, forced_things + drawn, crowd, voids)


def compose(rng: np.random.Generator, recipe: SceneRecipe) -> Scene:
    """Compose the scene of a recipe."""
    return compose_scene(rng, recipe.height, recipe.width, recipe.stuff, recipe.things,
                         recipe.crowd, recipe.void_blobs)


def panoptic_segments(rng: np.random.Generator, scene: Scene, cat_ids: dict[str, int],
                      cat_colours: dict[str, list[int]]) -> tuple[np.ndarray, list[dict]]:
    """Panoptic id map and ``segments_info`` of a scene.

    Segment ids follow the COCO panoptic habit: a stuff segment's id is its category
    colour, a thing's id a jittered category colour; all unique and non-zero.

    Returns:
        ([H, W] int64 segment ids, 0 = void; segments_info list in scene order).
    """
    ids = np.zeros(scene.label.shape, dtype=np.int64)
    lut = np.zeros(int(scene.label.max()) + 1, dtype=np.int64)
    used = {0}
    infos = []
    for seg in scene.segments:
        base = np.asarray(cat_colours[seg.name], dtype=np.int64)
        sid = int(rgb2id(base[None, None, :])[0, 0]) if not seg.isthing else 0
        while sid in used:
            jitter = np.clip(base + rng.integers(-30, 31, size=3), 0, 255)
            sid = int(rgb2id(jitter[None, None, :])[0, 0])
        used.add(sid)
        lut[seg.index] = sid
        mask = scene.label == seg.index
        x, y, w, h = (int(v) for v in mask_to_bbox(mask))
        infos.append({"id": sid, "category_id": cat_ids[seg.name], "iscrowd": int(seg.iscrowd),
                      "bbox": [x, y, w, h], "area": int(mask.sum())})
    ids = lut[scene.label]
    return ids, infos


def instance_annotations(scene: Scene, image_id, cat_ids: dict[str, int], next_id: int,
                         with_masks: bool) -> list[dict]:
    """COCO-style instance annotations of a scene's things.

    Args:
        scene: the composed scene.
        image_id: id of the image.
        cat_ids: class name -> category id of the target dataset.
        next_id: first annotation id to use.
        with_masks: add an RLE ``segmentation`` and use the mask area; without,
            ``area`` is the box area (as Objects365 ships boxes only).
    """
    anns = []
    for seg in scene.segments:
        if not seg.isthing:
            continue
        mask = scene.label == seg.index
        bbox = mask_to_bbox(mask)
        ann = {"id": next_id + len(anns), "image_id": image_id,
               "category_id": cat_ids[seg.name], "bbox": bbox,
               "area": int(mask.sum()) if with_masks else float(bbox[2] * bbox[3]),
               "iscrowd": int(seg.iscrowd)}
        if with_masks:
            ann["segmentation"] = encode_rle(mask)
        anns.append(ann)
    return anns


def present_classes(scene: Scene) -> list[str]:
    """Class names visible in a scene, in segment order, without repeats."""
    out: list[str] = []
    for seg in scene.segments:
        if seg.name not in out:
            out.append(seg.name)
    return out


def class_display_colours(names) -> dict[str, list[int]]:
    """name -> category display colour, for every name given."""
    return {n: category_colour(n) for n in names}


class ClassCounter:
    """Training image / instance counts per class name (LVIS frequencies come from them)."""

    def __init__(self) -> None:
        self.images: dict[str, int] = {}
        self.instances: dict[str, int] = {}

    def add(self, names: list[str]) -> None:
        """Count one training image.

        Args:
            names: class names annotated in the image, one per instance (repeats allowed).
        """
        for n in set(names):
            self.images[n] = self.images.get(n, 0) + 1
        for n in names:
            self.instances[n] = self.instances.get(n, 0) + 1


__all__ = [
    "SPLIT_CODES", "ClassCounter", "SceneRecipe", "ade_categories", "category_colour", "class_colour",
    "class_display_colours", "compose", "draw_recipe", "image_rng", "instance_annotations",
    "lvis_categories", "lvis_name", "make_captions", "noun_phrase", "objects365_categories",
    "panoptic_categories", "panoptic_segments", "present_classes", "zipf_weights",
]
