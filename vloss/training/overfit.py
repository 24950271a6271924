"""Overfit a handful of panoptic images: the "does it learn at all" check of model + losses + inference.

A plain single-process loop, no Ray: load ``N`` images of a COCO-panoptic-format dataset
(the synthetic world's ``coco_panoptic`` train split, or real COCO), resize them to a square
side divisible by 32, train the network on that one fixed batch with the real criterion
(Hungarian matching, cls/BCE/dice, deep supervision; total = Eq. 6) and AdamW, then run
panoptic post-processing on the trained model's predictions and score them against the
ground truth with the project's PQ scorer (:func:`vloss.eval.pq_stats.pq_stats_single`).

The same function backs the learning test (``tests/test_overfit.py``) and can be run by hand::

    .venv/bin/python -m vloss.training.overfit --world DIR            # a generated synthetic world
    .venv/bin/python -m vloss.training.overfit --json J --images I --pngs P --num-images 4 --steps 300

Resizing: every image is resized (not cropped) to ``size x size``: the RGB image bilinearly,
the panoptic id map with nearest neighbour, so ground truth and targets are the same pixels.
Segments that vanish in the resize are counted in :attr:`PanopticBatch.vanished` (reported,
never silently dropped); crowd segments are not training targets but stay in the PQ ground
truth as crowd regions, as the COCO panoptic rules treat them.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from vloss.config import VLOSSConfig, tiny
from vloss.config_io import apply_overrides
from vloss.data.coco_panoptic import PanopticDataset, check_panoptic_png, read_coco_panoptic
from vloss.data.errors import DataFormatError
from vloss.data.images import read_image
from vloss.data.transforms import normalize_images
from vloss.eval.pq_stats import PQStat, pq_stats_single
from vloss.inference.postprocess import panoptic_inference, resize_mask_logits
from vloss.losses import SetCriterion, weighted_total
from vloss.model import VLOSS
from vloss.training.optim import OptimConfig, build_lr_scheduler, build_optimizer
from vloss.training.step import compute_losses


@dataclass
class OverfitConfig:
    """Settings of an overfitting run.

    Args:
        num_images: how many images (the first ones of the dataset in file order).
        size: square training side; must be a multiple of 32.
        steps: optimizer steps on the one fixed batch.
        lr: AdamW learning rate of everything but the text tower.
        text_lr: learning rate of the text tower (lr / 10, the paper's ratio).
        weight_decay: AdamW weight decay.
        seed: ``torch.manual_seed`` before the model is built, and the seed of the criterion's
            point-sampling generator.
        object_mask_threshold: panoptic inference: minimum class probability of a kept query.
        overlap_threshold: panoptic inference: minimum share of its mask a query must keep.
        overrides: ``key=value`` overrides applied to the model/loss preset
            (:func:`vloss.config.apply_overrides`); by default fewer mask points (256 instead
            of the preset's 1024: a 128 x 128 image has 32 x 32 mask logits).
    """

    num_images: int = 3
    size: int = 128
    steps: int = 150
    lr: float = 1e-3
    text_lr: float = 1e-4
    weight_decay: float = 0.0
    seed: int = 0
    object_mask_threshold: float = 0.8
    overlap_threshold: float = 0.8
    overrides: tuple[str, ...] = ("loss.num_points=256",)

    def __post_init__(self) -> None:
        if self.size <= 0 or self.size % 32:
            raise ValueError(f"OverfitConfig.size must be a positive multiple of 32, got {self.size}")
        if self.num_images <= 0:
            raise ValueError(f"OverfitConfig.num_images must be positive, got {self.num_images}")
        if self.steps <= 0:
            raise ValueError(f"OverfitConfig.steps must be positive, got {self.steps}")


@dataclass
class PanopticBatch:
    """A fixed batch of resized panoptic images with training targets and PQ ground truth.

    Attributes:
        image_ids: dataset image ids, in batch order.
        images: ``[B, 3, S, S]`` float32, ImageNet-normalised.
        targets: per image ``{"labels": int64 [M], "masks": bool [M, S, S]}`` (non-crowd segments;
            labels are indices into ``vocabulary``).
        gt_ids: per image ``[S, S]`` int64 segment ids after the resize (0 = void).
        gt_segments: per image the ``segments_info`` of the segments still present
            (``id``, ``category_id``, ``iscrowd``).
        vocabulary: class names in the dataset's category order (label ``k`` = ``vocabulary[k]``).
        category_ids: the dataset category id of each vocabulary entry.
        is_thing: thing flag of each vocabulary entry.
        categories: category records ``{id, name, isthing}`` for the PQ scorer.
        vanished: segments (per image id) that the resize left without a pixel.
        source: the annotation file, for messages.
    """

    image_ids: list
    images: torch.Tensor
    targets: list[dict[str, torch.Tensor]]
    gt_ids: list[np.ndarray]
    gt_segments: list[list[dict]]
    vocabulary: list[str]
    category_ids: list[int]
    is_thing: list[bool]
    categories: list[dict]
    vanished: dict = field(default_factory=dict)
    source: str = ""

    @property
    def num_targets(self) -> int:
        return sum(int(t["labels"].numel()) for t in self.targets)


def _resize(arr: np.ndarray, size: int, resample: int) -> np.ndarray:
    return np.asarray(Image.fromarray(arr).resize((size, size), resample=resample))


def load_panoptic_batch(dataset: PanopticDataset, num_images: int, size: int) -> PanopticBatch:
    """The first ``num_images`` images of ``dataset`` as one fixed training batch at ``size x size``.

    Args:
        dataset: a parsed panoptic dataset (:func:`vloss.data.coco_panoptic.read_coco_panoptic`).
        num_images: how many images, in file order.
        size: output side (resize, not crop; ids with nearest neighbour).

    Returns:
        The :class:`PanopticBatch`.

    Raises:
        DataFormatError: a PNG that disagrees with its JSON, an unreadable image, or an image
            with no non-crowd segment left after the resize (nothing to learn from).
        ValueError: the dataset has fewer than ``num_images`` images.
    """
    if len(dataset) < num_images:
        raise ValueError(f"{dataset.json_path} has {len(dataset)} images, {num_images} requested")
    cats = dataset.categories
    label_of = {c.id: k for k, c in enumerate(cats)}
    rgb, targets, gt_ids, gt_segments, vanished = [], [], [], [], {}
    for im in dataset.images[:num_images]:
        ids = check_panoptic_png(im)  # [H, W] int64, checked against segments_info
        try:
            image = read_image(im.image_path)  # [H, W, 3] uint8
        except OSError as e:
            raise DataFormatError(im.image_path, f"cannot read image: {e}", field="file_name",
                                  record=f"image id {im.id}") from e
        if image.shape[:2] != ids.shape:
            raise DataFormatError(dataset.json_path, f"image {im.image_path.name} is {image.shape[:2]} "
                                  f"but its PNG is {ids.shape}", field="file_name", record=f"image id {im.id}")
        rgb.append(_resize(image, size, Image.BILINEAR))
        # ids < 256**3 fit in int32, which PIL resizes exactly (mode "I")
        small = _resize(ids.astype(np.int32), size, Image.NEAREST).astype(np.int64)  # [S, S]
        present = set(np.unique(small).tolist())
        segs, labels, masks, lost = [], [], [], []
        for s in im.segments:
            if s.id not in present:
                lost.append(s.id)
                continue
            segs.append({"id": s.id, "category_id": s.category_id, "iscrowd": int(s.iscrowd)})
            if not s.iscrowd:
                labels.append(label_of[s.category_id])
                masks.append(small == s.id)
        if not labels:
            raise DataFormatError(dataset.json_path, f"no non-crowd segment left at {size}x{size}",
                                  field="segments_info", record=f"image id {im.id}")
        if lost:
            vanished[im.id] = lost
        targets.append({"labels": torch.tensor(labels, dtype=torch.int64),  # [M]
                        "masks": torch.from_numpy(np.stack(masks))})  # [M, S, S] bool
        gt_ids.append(small)
        gt_segments.append(segs)
    return PanopticBatch(
        image_ids=[im.id for im in dataset.images[:num_images]],
        images=normalize_images(np.stack(rgb)),  # [B, 3, S, S]
        targets=targets, gt_ids=gt_ids, gt_segments=gt_segments,
        vocabulary=[c.name for c in cats], category_ids=[c.id for c in cats],
        is_thing=[bool(c.isthing) for c in cats],
        categories=[{"id": c.id, "name": c.name, "isthing": int(c.isthing)} for c in cats],
        vanished=vanished, source=str(dataset.json_path))


def batch_loss(model: VLOSS, criterion: SetCriterion, batch: PanopticBatch, cfg: VLOSSConfig,
               generator: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 6 total (and the unweighted terms) of the model on the batch.

    Args:
        model: the network (its mode decides whether class embeddings carry gradients).
        criterion: the set criterion.
        batch: the fixed batch.
        cfg: the config holding the loss weights.
        generator: seeded generator of the criterion's random points.
    """
    class_embeds = model.class_embeddings(batch.vocabulary)  # [C, Dt]
    outputs = model(batch.images, class_embeds)  # pred_logits [B, Q, C+1], pred_masks [B, Q, S/4, S/4]
    losses = compute_losses("panoptic", outputs, {"targets": batch.targets}, cfg.loss, criterion, generator=generator)
    return weighted_total(losses, cfg.loss), losses


def fixed_loss(model: VLOSS, criterion: SetCriterion, batch: PanopticBatch, cfg: VLOSSConfig,
               seed: int) -> float:
    """The Eq. 6 total with a freshly seeded point generator and no gradients.

    Used before and after training so both numbers see the same random points.
    """
    with torch.no_grad():
        total, _ = batch_loss(model, criterion, batch, cfg, torch.Generator().manual_seed(seed))
    return float(total)


@torch.no_grad()
def predict_panoptic(model: VLOSS, batch: PanopticBatch, object_mask_threshold: float = 0.8,
                     overlap_threshold: float = 0.8) -> list[tuple[np.ndarray, list[dict]]]:
    """Panoptic predictions in eval mode, mask logits upsampled to the image size.

    Returns:
        Per image ``(pred_ids [S, S] int64, segments_info)`` with ``category_id`` being the
        dataset category id (ready for the PQ scorer).
    """
    was_training = model.training
    model.eval()
    try:
        class_embeds = model.class_embeddings(batch.vocabulary)  # [C, Dt]
        out = model(batch.images, class_embeds)
    finally:
        model.train(was_training)
    size = tuple(batch.images.shape[-2:])
    results = []
    for b in range(batch.images.shape[0]):
        masks = resize_mask_logits(out["pred_masks"][b], size)  # [Q, S, S]
        seg_ids, infos = panoptic_inference(out["pred_logits"][b], masks, batch.is_thing,
                                            object_mask_threshold, overlap_threshold)
        segments = [{"id": s["id"], "category_id": batch.category_ids[s["category"]],
                     "iscrowd": 0, "score": s["score"]} for s in infos]
        results.append((seg_ids.numpy().astype(np.int64), segments))
    return results


def score_pq(batch: PanopticBatch, predictions: Sequence[tuple[np.ndarray, list[dict]]]) -> dict:
    """PQ of ``predictions`` against the batch's ground truth (summary of the project scorer)."""
    stat = PQStat.empty(batch.categories)
    for image_id, gt, gt_segs, (pred, pred_segs) in zip(batch.image_ids, batch.gt_ids, batch.gt_segments,
                                                        predictions):
        stat += pq_stats_single(gt, gt_segs, pred, pred_segs, batch.categories, image_id=image_id,
                                gt_source=batch.source, pred_source="<overfit predictions>")
    return stat.summary(batch.categories)


@dataclass
class OverfitResult:
    """What an overfitting run measured.

    Attributes:
        initial_loss: Eq. 6 total before the first step (fixed point seed).
        initial_pq: PQ summary of the untrained model's predictions (the control).
        final_loss: the same after the last step.
        losses: training loss of every step (each with its own random points).
        pq: PQ summary (``All`` / ``Things`` / ``Stuff`` / ``per_class``).
        predictions: per image ``(pred_ids, segments_info)``.
        batch: the batch trained on.
        seconds: wall time of the training loop.
        model: the trained network (eval mode), e.g. to save with ``save_model_weights``.
        config: the model + loss config it was built from (overrides applied).
    """

    initial_loss: float
    initial_pq: dict
    final_loss: float
    losses: list[float]
    pq: dict
    predictions: list
    batch: PanopticBatch
    seconds: float
    model: VLOSS | None = None
    config: VLOSSConfig | None = None

    @property
    def loss_drop(self) -> float:
        """Relative fall of the loss, ``1 - final / initial``."""
        return 1.0 - self.final_loss / self.initial_loss


def overfit(dataset: PanopticDataset, run: OverfitConfig, model_cfg: VLOSSConfig | None = None) -> OverfitResult:
    """Train a fresh model on a fixed batch of ``dataset`` and score its panoptic predictions.

    Args:
        dataset: a parsed panoptic dataset.
        run: the run settings.
        model_cfg: model + loss config (default: :func:`vloss.config.tiny`); ``run.overrides``
            are applied to it.

    Returns:
        The :class:`OverfitResult`.
    """
    cfg = apply_overrides(model_cfg if model_cfg is not None else tiny(), list(run.overrides))
    batch = load_panoptic_batch(dataset, run.num_images, run.size)
    torch.manual_seed(run.seed)
    model = VLOSS(cfg.model)
    model.train()
    criterion = SetCriterion(cfg.loss)
    optim_cfg = OptimConfig(base_lr=run.lr, text_lr=run.text_lr, weight_decay=run.weight_decay)
    optimizer = build_optimizer(model, optim_cfg)
    scheduler = build_lr_scheduler(optimizer, run.steps, optim_cfg)  # x0.1 at 8/12 and 11/12 of the run
    initial = fixed_loss(model, criterion, batch, cfg, run.seed)
    initial_pq = score_pq(batch, predict_panoptic(model, batch, run.object_mask_threshold, run.overlap_threshold))
    generator = torch.Generator().manual_seed(run.seed + 1)
    losses: list[float] = []
    start = time.perf_counter()
    for _ in range(run.steps):
        total, _ = batch_loss(model, criterion, batch, cfg, generator)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        scheduler.step()
        losses.append(total.detach().item())
    seconds = time.perf_counter() - start
    final = fixed_loss(model, criterion, batch, cfg, run.seed)
    predictions = predict_panoptic(model, batch, run.object_mask_threshold, run.overlap_threshold)
    return OverfitResult(initial, initial_pq, final, losses, score_pq(batch, predictions), predictions, batch, seconds,
                         model.eval(), cfg)


def main(argv: list[str] | None = None) -> int:
    """Command line: overfit a few images and print the loss fall and PQ."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--world", type=Path, help="a synthetic world (uses its coco_panoptic train split)")
    p.add_argument("--json", type=Path, help="panoptic JSON (instead of --world)")
    p.add_argument("--images", type=Path, help="image directory (with --json)")
    p.add_argument("--pngs", type=Path, help="panoptic PNG directory (with --json)")
    defaults = OverfitConfig()
    p.add_argument("--num-images", type=int, default=defaults.num_images)
    p.add_argument("--size", type=int, default=defaults.size)
    p.add_argument("--steps", type=int, default=defaults.steps)
    p.add_argument("--lr", type=float, default=defaults.lr)
    p.add_argument("--text-lr", type=float, default=defaults.text_lr)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override of the tiny preset after the defaults "
                   f"{list(defaults.overrides)}, e.g. decoder.num_queries=30 (repeatable)")
    args = p.parse_args(argv)
    if args.world is not None:
        from vloss.data.synthetic import load_world

        paths = load_world(args.world)["paths"]["coco_panoptic"]
        json_path, image_dir, png_dir = paths["train_json"], paths["train_images"], paths["train_png_dir"]
    elif args.json and args.images and args.pngs:
        json_path, image_dir, png_dir = args.json, args.images, args.pngs
    else:
        p.error("give --world, or all of --json, --images and --pngs")
    if args.threads:
        torch.set_num_threads(args.threads)
    run = OverfitConfig(num_images=args.num_images, size=args.size, steps=args.steps, lr=args.lr,
                        text_lr=args.text_lr, seed=args.seed,
                        overrides=defaults.overrides + tuple(args.overrides))
    result = overfit(read_coco_panoptic(json_path, image_dir, png_dir), run)
    pq = result.pq["All"]
    untrained = result.initial_pq["All"]["pq"]
    print(f"images {result.batch.image_ids} at {run.size}x{run.size}, {result.batch.num_targets} target segments"
          f" (vanished in resize: {sum(map(len, result.batch.vanished.values()))})")
    print(f"loss {result.initial_loss:.3f} -> {result.final_loss:.3f} (fall {100 * result.loss_drop:.1f}%) "
          f"in {run.steps} steps, {result.seconds:.1f} s")
    print(f"PQ {pq['pq']:.3f}  SQ {pq['sq']:.3f}  RQ {pq['rq']:.3f}  over {pq['n']} classes "
          f"(untrained: PQ {untrained if untrained is None else round(untrained, 3)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
