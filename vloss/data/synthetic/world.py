"""The whole synthetic world: its layout, its sizes, and the generator that writes every dataset.

``generate_world`` writes the tree of ``docs/DATA_LAYOUT.md`` (COCO panoptic + captions,
Objects365 boxes with hidden true masks, image-text pairs, the towers' pretraining corpus,
ADE20K panoptic val, LVIS v1 val) through one writer per dataset, then ``world.json``. The same seed gives
byte-identical files; every image is drawn from a generator seeded by (seed, split, image
index), so the writers do not share random state.

Seen and unseen classes: the training splits (COCO panoptic train + Objects365) annotate
only the designed-seen classes; ADE20K and LVIS add unseen things (new colour x shape
combinations) and unseen stuff; the image-text captions mention every class of the world.
``world.json`` records the classes actually annotated in training and, from them, which
evaluation classes are unseen.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from vloss.data.errors import DataFormatError
from vloss.data.synthetic.ade20k import write_ade20k
from vloss.data.synthetic.coco_panoptic import write_coco_panoptic
from vloss.data.synthetic.files import GENERATOR_VERSION, dump_json
from vloss.data.synthetic.image_text import write_image_text
from vloss.data.synthetic.lvis import write_lvis
from vloss.data.synthetic.objects365 import write_objects365
from vloss.data.synthetic.pretrain_corpus import write_pretrain_corpus
from vloss.data.synthetic.scenes import ClassCounter
from vloss.data.synthetic.vocab import build_vocabulary

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
    "pretrain_corpus": {
        "root": "pretrain_corpus",
        "images": "pretrain_corpus/images",
        "captions": "pretrain_corpus/annotations/captions.json",
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
        pretrain_corpus: image-caption pairs only the tower pretraining reads (``jobs/pretrain.py``).
        ade20k_val: ADE20K-panoptic val images.
        lvis_val: LVIS v1 val images.
    """

    coco_panoptic_train: int = 48
    coco_panoptic_val: int = 12
    objects365_train: int = 96
    image_text: int = 96
    ade20k_val: int = 16
    lvis_val: int = 16
    pretrain_corpus: int = 4800

    @classmethod
    def preset(cls, name: str) -> "WorldSizes":
        """``small`` (default, seconds) or ``medium`` (about 4x)."""
        if name == "small":
            return cls()
        if name == "medium":
            return cls(200, 50, 400, 400, 64, 64, 9600)
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


def generate_world(out: str | Path, seed: int = 0, sizes: WorldSizes | None = None,
                   size_preset: str = "small", overwrite: bool = False) -> dict:
    """Write the synthetic world under ``out`` and return its summary.

    The world is written into a staging folder beside ``out`` and moved into place when complete,
    so an interrupted run leaves no half-written world that a later run would trust (a staging
    folder left by a killed run is removed by the next one).

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
    final = Path(out)
    sizes = sizes or WorldSizes.preset(size_preset)
    if final.exists() and any(final.iterdir()) and not overwrite:
        raise FileExistsError(f"{final} is not empty (pass overwrite=True / --overwrite)")
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{final.name}.partial-*"):  # left by an interrupted run
        shutil.rmtree(stale, ignore_errors=True)
    root = final.parent / f".{final.name}.partial-{os.getpid()}"
    root.mkdir()
    try:
        summary = _write_world(root, seed, sizes, size_preset)
        if final.exists():
            for sub in [v["root"] for v in PATHS.values()]:
                shutil.rmtree(final / sub, ignore_errors=True)
            (final / "world.json").unlink(missing_ok=True)
            for item in sorted(root.iterdir(), key=lambda p: p.name == "world.json"):
                os.replace(item, final / item.name)  # world.json last: it marks the world complete
            root.rmdir()
        else:
            os.replace(root, final)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return summary


def _write_world(root: Path, seed: int, sizes: WorldSizes, size_preset: str) -> dict:
    """Write every split and world.json under ``root``; returns the summary."""
    vocab = build_vocabulary()
    train = ClassCounter()

    # The training splits first: LVIS frequencies come from their class counts.
    pan = write_coco_panoptic(root, seed, sizes.coco_panoptic_train, sizes.coco_panoptic_val, vocab, train,
                              PATHS["coco_panoptic"])
    o365 = write_objects365(root, seed, sizes.objects365_train, vocab, train, PATHS["objects365"])
    it = write_image_text(root, seed, sizes.image_text, vocab, PATHS["image_text"])
    pre = write_pretrain_corpus(root, seed, sizes.pretrain_corpus, vocab, PATHS["pretrain_corpus"])
    ade = write_ade20k(root, seed, sizes.ade20k_val, vocab, PATHS["ade20k_panoptic"])
    n_train = sizes.coco_panoptic_train + sizes.objects365_train
    lvis = write_lvis(root, seed, sizes.lvis_val, vocab, train, n_train, PATHS["lvis"])

    # Bookkeeping.
    annotated = set(train.images)
    mentioned = set(it["classes"])
    eval_things = sorted(set(vocab.ade_things) | set(vocab.lvis_things))
    eval_stuff = sorted(vocab.ade_stuff)
    unseen_things = [n for n in eval_things if n not in annotated]
    unseen_stuff = [n for n in eval_stuff if n not in annotated]
    counts = {**pan["counts"], **o365["counts"], **it["counts"], **pre["counts"], **ade["counts"],
              **lvis["counts"]}
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
            "pretrain_corpus": {"classes": pre["classes"]},
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
        "lvis_frequency": lvis["frequency"],
    }
    dump_json(root / "world.json", world, indent=2)
    return {
        "seed": seed, "sizes": asdict(sizes), "counts": counts,
        "vocab_sizes": {"coco_panoptic": pan["vocab_size"], "objects365": o365["vocab_size"],
                        "ade20k_panoptic": ade["vocab_size"], "lvis": lvis["vocab_size"],
                        "words": len(vocab.words())},
        "seen_classes": len(annotated), "unseen_things": len(unseen_things),
        "unseen_stuff": len(unseen_stuff), "lvis_frequency": lvis["frequency"]["counts"],
    }


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
    """A few human-readable lines.

    Args:
        summary: what :func:`generate_world` returns.
    """
    lines = [f"synthetic world (seed {summary['seed']})"]
    for split, c in summary["counts"].items():
        lines.append(f"  {split:<20} " + ", ".join(f"{k} {v}" for k, v in c.items()))
    lines.append("  vocabulary sizes: " + ", ".join(f"{k} {v}" for k, v in summary["vocab_sizes"].items()))
    lines.append(f"  seen classes (training annotations): {summary['seen_classes']}; unseen in "
                 f"ADE/LVIS: {summary['unseen_things']} things, {summary['unseen_stuff']} stuff")
    lines.append("  LVIS frequency: " + ", ".join(f"{k} {v}" for k, v in summary["lvis_frequency"].items()))
    return "\n".join(lines)
