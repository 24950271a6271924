"""The pretraining corpus on a worker: images decoded once, batches and augmentation drawn from the seed.

A step's batch is a pure function of ``(seed, step)``: epoch ``e`` visits the corpus in the
permutation drawn from ``(seed, e)``, step ``i`` of the epoch takes its ``i``-th block of
``batch_size`` images, and rank ``r`` of ``W`` takes the ``r``-th of ``W`` equal parts of it.
Each image's crop, flip and caption pick are drawn from ``(seed, epoch, image index)``. So a run
resumed at step ``s`` trains on exactly the batches an uninterrupted run trains on, and nothing
already trained is read again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vloss.data.coco_captions import read_coco_captions
from vloss.data.transforms import IMAGENET_MEAN, IMAGENET_STD

_ORDER_STREAM = 0x0D0E  # the SeedSequence stream of the epoch permutations
_SAMPLE_STREAM = 0x5A3E  # ... of the per-image augmentation


@dataclass
class Corpus:
    """Image-caption pairs of a COCO captions file (images without captions are dropped).

    Args:
        paths: image files, in file order.
        captions: the captions of each image.
        skipped: images of the file that have no caption.
        classes: the class names of the label objective (empty: none).
        labels: per image, the indices into ``classes`` of the names its captions mention.
    """

    paths: list[Path]
    captions: list[list[str]]
    skipped: int = 0
    classes: list[str] = field(default_factory=list)
    labels: list[list[int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)


def read_corpus(json_path: str | Path, image_dir: str | Path, classes: list[str] | None = None) -> Corpus:
    """Read a COCO captions file (validated by :func:`vloss.data.coco_captions.read_coco_captions`).

    Args:
        json_path: COCO captions JSON.
        image_dir: folder its ``file_name`` entries are relative to.
        classes: class names whose mentions in an image's captions become its labels (see
            :func:`caption_labels`); None for a pure CLIP run.
    """
    data = read_coco_captions(json_path, image_dir)
    kept = [im for im in data.images if im.captions]
    captions = [list(im.captions) for im in kept]
    classes = list(classes or [])
    labels = [caption_labels(c, classes) for c in captions] if classes else []
    return Corpus([im.path for im in kept], captions, len(data.images) - len(kept), classes, labels)


def caption_labels(captions: list[str], classes: list[str]) -> list[int]:
    """Indices of the ``classes`` that any of ``captions`` names (whole words, case-insensitive, a
    plural ``s`` / ``es`` allowed): labels read from words, as web image-text data gives them.

    Args:
        captions: one image's captions.
        classes: class names.

    Returns:
        Sorted indices into ``classes``.
    """
    text = " ".join(captions).lower()
    return [i for i, name in enumerate(classes)
            if re.search(r"\b" + re.escape(name.lower().replace("_", " ")) + r"(?:s|es)?\b", text)]


def load_images(paths: list[Path], size: int) -> torch.Tensor:
    """Decode and resize every image to ``size x size`` (bilinear; aspect not kept, as CLIP's squash).

    Args:
        paths: image files.
        size: side in pixels.

    Returns:
        ``[N, 3, size, size]`` uint8.
    """
    out = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR))
        except (OSError, ValueError) as exc:
            raise ValueError(f"pretraining corpus image {path}: cannot be decoded ({exc})") from exc
        out[i] = torch.from_numpy(arr.copy()).permute(2, 0, 1)
    return out


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The permutation of the ``n`` corpus images that epoch ``epoch`` visits them in."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, _ORDER_STREAM, epoch]))
    return rng.permutation(n)


@dataclass(frozen=True)
class BatchPlan:
    """Which images every step of the run trains on.

    Args:
        num_images: corpus size.
        batch_size: global batch.
        world_size: workers.
        epochs: passes over the corpus.
        seed: run seed.
    """

    num_images: int
    batch_size: int
    world_size: int
    epochs: int
    seed: int

    def __post_init__(self) -> None:
        if self.batch_size % self.world_size:
            raise ValueError(f"pretrain.batch_size={self.batch_size} does not divide over {self.world_size} workers; "
                             f"choose a multiple of {self.world_size}")
        if self.num_images < self.batch_size:
            raise ValueError(f"the pretraining corpus has {self.num_images} images with captions, fewer than one "
                             f"batch (pretrain.batch_size={self.batch_size})")

    @property
    def steps_per_epoch(self) -> int:
        """Full batches per epoch (the remainder of the permutation is left for that epoch)."""
        return self.num_images // self.batch_size

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    def rank_indices(self, step: int, rank: int) -> tuple[int, np.ndarray]:
        """``(epoch, corpus indices [batch_size / world_size])`` rank ``rank`` trains on at ``step`` (0-based)."""
        epoch, i = divmod(step, self.steps_per_epoch)
        per_rank = self.batch_size // self.world_size
        start = i * self.batch_size + rank * per_rank
        return epoch, epoch_order(self.num_images, self.seed, epoch)[start:start + per_rank]


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one image's augmentation and caption pick in one epoch."""
    return np.random.default_rng(np.random.SeedSequence([seed, _SAMPLE_STREAM, epoch, int(index)]))


def augment(image: torch.Tensor, rng: np.random.Generator, min_crop: float, flip: bool) -> torch.Tensor:
    """Random resized crop (area in ``[min_crop, 1]``, aspect in [3/4, 4/3]) and flip, then normalise.

    Args:
        image: ``[3, S, S]`` uint8.
        rng: the image's generator (:func:`sample_rng`).
        min_crop: smallest crop area fraction; 1 turns cropping off (the whole image).
        flip: flip horizontally with probability 1/2.

    Returns:
        ``[3, S, S]`` float32, ImageNet-normalised.
    """
    size = image.shape[-1]
    if min_crop < 1.0:
        area = rng.uniform(min_crop, 1.0)
        aspect = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
        w = int(round(min(1.0, np.sqrt(area * aspect)) * size))
        h = int(round(min(1.0, np.sqrt(area / aspect)) * size))
        x0 = int(rng.integers(0, size - w + 1))
        y0 = int(rng.integers(0, size - h + 1))
        crop = image[:, y0:y0 + h, x0:x0 + w].float().div_(255.0)[None]  # [1, 3, h, w]
        out = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False)[0]
    else:
        out = image.float().div(255.0)
    if flip and rng.random() < 0.5:
        out = out.flip(-1)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (out - mean) / std


def label_targets(corpus: Corpus, indices: np.ndarray) -> torch.Tensor:
    """``[b, C]`` float: 1 where image ``indices[i]``'s captions name class ``c`` (C = ``len(corpus.classes)``)."""
    out = torch.zeros((len(indices), len(corpus.classes)))
    for row, index in enumerate(indices):
        out[row, corpus.labels[int(index)]] = 1.0
    return out


def make_batch(images: torch.Tensor, corpus: Corpus, indices: np.ndarray, seed: int, epoch: int,
               min_crop: float, flip: bool) -> tuple[torch.Tensor, list[str]]:
    """The augmented images ``[b, 3, S, S]`` and one caption each for corpus ``indices``."""
    batch, texts = [], []
    for index in indices:
        rng = sample_rng(seed, epoch, int(index))
        batch.append(augment(images[index], rng, min_crop, flip))
        caps = corpus.captions[index]
        texts.append(caps[int(rng.integers(len(caps)))])
    return torch.stack(batch), texts
