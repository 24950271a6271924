"""Training-time transforms (paper Sec. 4.2), pure numpy/PIL so they run inside Ray Data.

* Dense tasks (panoptic, detection): large-scale jitter (LSJ) — resize so the image fits a
  square of ``size * s`` with ``s ~ U(min_scale, max_scale)``, random horizontal flip, then a
  fixed-size ``size × size`` crop (random offset when larger, zero padding when smaller). Masks
  follow the image exactly (nearest-neighbour); instances whose mask leaves the crop are dropped.
  ``size`` is 768 in ``paper()``.
* Image–text pairs: random resized crop to ``size × size`` (224 in the paper) and one caption
  chosen at random.

Each function takes a ``numpy.random.Generator`` so a (seed, row) pair always yields the same
sample; the training pipeline derives the generator from the run's data seed, the task, the pass
over the task's data and the image id (``pipelines.train.transforms.sample_rng``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class DenseSample:
    """One dense training sample after LSJ.

    Attributes:
        image: [S, S, 3] uint8 (zero where padded).
        masks: [M, S, S] bool, one per kept instance / segment.
        labels: [M] int64 contiguous class indices into the task's vocabulary.
        valid: [S, S] bool, False on padding.
    """

    image: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    valid: np.ndarray


def _resize(arr: np.ndarray, height: int, width: int, resample: int) -> np.ndarray:
    return np.asarray(Image.fromarray(arr).resize((width, height), resample=resample))


def lsj_resized_shape(height: int, width: int, size: int, rng: np.random.Generator, min_scale: float = 0.1,
                      max_scale: float = 2.0) -> tuple[int, int]:
    """The first draw of :func:`large_scale_jitter`: the jitter factor, as the size ``(nh, nw)`` the
    image is resized to before the crop (a decoder may stop at that size: ``decode_image_reduced``)."""
    s = rng.uniform(min_scale, max_scale)
    ratio = min(size * s / height, size * s / width)
    return max(1, int(round(height * ratio))), max(1, int(round(width * ratio)))


def large_scale_jitter(image: np.ndarray, masks: np.ndarray, labels: np.ndarray, size: int,
                       rng: np.random.Generator, min_scale: float = 0.1, max_scale: float = 2.0,
                       flip: bool = True, resized: tuple[int, int] | None = None) -> DenseSample:
    """LSJ augmentation of one image and its instance masks.

    Args:
        image: [H, W, 3] uint8, or the same image decoded smaller (a JPEG at a reduced scale) when
            ``resized`` is given.
        masks: [M, H, W] bool (full size: they define H and W).
        labels: [M] int class indices.
        size: output side S.
        rng: random generator (scale, flip, crop offset).
        min_scale, max_scale: range of the jitter factor s (Mask2Former: 0.1–2.0).
        flip: allow a random horizontal flip.
        resized: ``(nh, nw)`` already drawn from ``rng`` by :func:`lsj_resized_shape` (the caller
            decoded the image for it); None: drawn here. The random draws are the same either way.
    """
    masks = np.asarray(masks, dtype=bool)
    h, w = masks.shape[1:] if masks.ndim == 3 and resized is not None else image.shape[:2]
    masks = masks.reshape(-1, h, w)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(masks) != len(labels):
        raise ValueError(f"{len(masks)} masks but {len(labels)} labels")
    nh, nw = resized if resized is not None else lsj_resized_shape(h, w, size, rng, min_scale, max_scale)
    img = _resize(image, nh, nw, Image.BILINEAR)
    msk = np.stack([_resize(m.astype(np.uint8), nh, nw, Image.NEAREST) for m in masks]).astype(bool) \
        if len(masks) else np.zeros((0, nh, nw), bool)
    if flip and rng.random() < 0.5:
        img = img[:, ::-1]
        msk = msk[:, :, ::-1]
    # crop offset (only where the resized image is larger than the output)
    y0 = int(rng.integers(0, nh - size + 1)) if nh > size else 0
    x0 = int(rng.integers(0, nw - size + 1)) if nw > size else 0
    img = img[y0:y0 + size, x0:x0 + size]
    msk = msk[:, y0:y0 + size, x0:x0 + size]
    ch, cw = img.shape[:2]
    out_img = np.zeros((size, size, 3), np.uint8)
    out_img[:ch, :cw] = img
    out_masks = np.zeros((len(msk), size, size), bool)
    out_masks[:, :ch, :cw] = msk
    valid = np.zeros((size, size), bool)
    valid[:ch, :cw] = True
    keep = out_masks.reshape(len(out_masks), -1).any(axis=1) if len(out_masks) else np.zeros(0, bool)
    return DenseSample(out_img, out_masks[keep], labels[keep], valid)


def resized_crop_box(height: int, width: int, rng: np.random.Generator, scale: tuple[float, float] = (0.5, 1.0),
                     ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """The random draws of :func:`random_resized_crop`: the crop ``(y0, x0, ch, cw)`` in an image of
    ``height`` x ``width`` (10 tries at a random area and aspect, else the centre square)."""
    area = height * width
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = float(np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]))))
        cw = int(round(np.sqrt(target * aspect)))
        ch = int(round(np.sqrt(target / aspect)))
        if 0 < cw <= width and 0 < ch <= height:
            return int(rng.integers(0, height - ch + 1)), int(rng.integers(0, width - cw + 1)), ch, cw
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side, side


def crop_resize(image: np.ndarray, box: tuple[int, int, int, int], full: tuple[int, int], size: int) -> np.ndarray:
    """Crop ``box`` (in a ``full`` = (H, W) image) from ``image`` -- that image, or it decoded at a
    reduced scale, the box scaled to match -- and resize the crop to [size, size, 3] (bicubic)."""
    y0, x0, ch, cw = box
    fy, fx = image.shape[0] / full[0], image.shape[1] / full[1]
    if (fy, fx) != (1.0, 1.0):
        y1, x1 = int(round((y0 + ch) * fy)), int(round((x0 + cw) * fx))
        y0, x0 = int(round(y0 * fy)), int(round(x0 * fx))
        ch, cw = max(1, y1 - y0), max(1, x1 - x0)
    return _resize(np.ascontiguousarray(image[y0:y0 + ch, x0:x0 + cw]), size, size, Image.BICUBIC)


def random_resized_crop(image: np.ndarray, size: int, rng: np.random.Generator,
                        scale: tuple[float, float] = (0.5, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> np.ndarray:
    """CLIP-style random resized crop of [H, W, 3] uint8 to [size, size, 3] uint8."""
    h, w = image.shape[:2]
    return crop_resize(image, resized_crop_box(h, w, rng, scale, ratio), (h, w), size)


def pick_caption(captions, rng: np.random.Generator) -> str:
    """One caption of an image, chosen at random."""
    captions = list(captions)
    if not captions:
        raise ValueError("an image-text sample needs at least one caption")
    return str(captions[int(rng.integers(0, len(captions)))])


def resized_shape(height: int, width: int, size: int, max_size: int) -> tuple[int, int]:
    """(h, w) with the shorter side ``size`` and the longer side at most ``max_size`` (inference resize)."""
    scale = size / min(height, width)
    if max(height, width) * scale > max_size:
        scale = max_size / max(height, width)
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def resize_for_inference(image: np.ndarray, size: int, max_size: int) -> np.ndarray:
    """Resize an ``[H, W, 3]`` uint8 image to :func:`resized_shape` (bilinear, as evaluation does)."""
    rh, rw = resized_shape(image.shape[0], image.shape[1], size, max_size)
    return np.asarray(Image.fromarray(image).resize((rw, rh), resample=Image.BILINEAR))


def normalize_images(images: np.ndarray):
    """[B, H, W, 3] uint8 -> [B, 3, H, W] float32 tensor normalised with ImageNet statistics."""
    import torch

    x = torch.from_numpy(np.array(images, dtype=np.uint8, copy=True)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def pack_masks(masks: np.ndarray) -> bytes:
    """[M, S, S] bool -> bit-packed bytes (8× smaller, for moving batches through Ray Data)."""
    return np.packbits(np.asarray(masks, dtype=bool).reshape(-1)).tobytes()


def unpack_masks(data: bytes, num: int, height: int, width: int) -> np.ndarray:
    """Inverse of :func:`pack_masks`."""
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=num * height * width)
    return bits.reshape(num, height, width).astype(bool)


def sample_rng(seed: int, epoch: int, key: int) -> np.random.Generator:
    """Deterministic generator for one (seed, epoch, sample) triple."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), int(key) & 0xFFFFFFFFFFFF])
