"""Use a trained model: any vocabulary, any images, panoptic / instance / semantic results.

Typical use::

    from vloss.inference.predictor import Predictor

    predictor = Predictor.from_checkpoint("runs/vloss/best_checkpoint", device="cpu")
    predictor.set_vocabulary(things=["red car", "dog"], stuff=["sky", "road"])
    result = predictor("street.jpg")                      # or an array, a PIL image, a list
    for seg in result.segments:
        print(seg.name, round(seg.score, 2), seg.area)
    result.draw("street.jpg").save("street_overlay.png")

The class names are cleaned and put in the prompt templates exactly as the checkpoint's config
says (``model.text.names``, ``model.text.templates``), the same as in training and evaluation;
their embeddings are computed once per vocabulary and cached. Images are resized as evaluation
does (shorter side ``size``, default the run's training size; longer side at most 4x), run in
batches padded to the network's size divisor, and post-processed at their original size with
Mask2Former's rules (:mod:`vloss.inference.postprocess`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from vloss.data.class_names import clean_names
from vloss.data.images import read_image, to_rgb
from vloss.data.masks import encode_rle, id2rgb, mask_to_bbox
from vloss.data.transforms import resize_for_inference
from vloss.inference.postprocess import (
    forward_padded,
    instance_inference,
    panoptic_inference,
    resize_mask_logits,
    semantic_inference,
)

TASKS = ("panoptic", "instance", "semantic")


@dataclass
class Vocabulary:
    """Class names and whether each is a thing (countable) or stuff.

    Args:
        names: class names as the user spells them.
        isthing: one flag per name.
    """

    names: list[str]
    isthing: list[bool]

    @classmethod
    def from_lists(cls, things: Sequence[str] = (), stuff: Sequence[str] = ()) -> "Vocabulary":
        """Things first, then stuff; surrounding spaces stripped.

        Raises:
            ValueError: an empty vocabulary, an empty name, or duplicate names (also names that
                clean to the same text, like "Sky" and "sky", which would be one class to the model).
        """
        names = [n.strip() for n in things] + [n.strip() for n in stuff]
        if not names:
            raise ValueError("the vocabulary is empty: give thing and/or stuff class names")
        if any(not n for n in names):
            raise ValueError("the vocabulary holds an empty class name")
        seen: dict[str, str] = {}
        for n in names:
            key = " ".join(n.lower().split())
            if key in seen:
                raise ValueError(f"duplicate class name {n!r} (same as {seen[key]!r}); each class once")
            seen[key] = n
        return cls(names, [True] * len(things) + [False] * len(stuff))

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "Vocabulary":
        """Read a vocabulary file.

        Two formats: a JSON list of ``{"name": str, "isthing": bool}``, or text with one name per
        line, optionally prefixed ``thing:`` or ``stuff:`` (no prefix: a thing); blank lines and
        lines starting with ``#`` are skipped.

        Raises:
            ValueError: a malformed file (naming the file and the line or entry).
        """
        return cls.parse(Path(path).read_text(encoding="utf-8"), str(path))

    @classmethod
    def parse(cls, text: str, path: str = "<vocabulary>") -> "Vocabulary":
        """A vocabulary from a file's text (see :meth:`from_file`); ``path`` names it in errors."""
        things, stuff = [], []
        if text.lstrip().startswith("["):
            try:
                entries = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: not valid JSON ({exc})") from exc
            for k, e in enumerate(entries):
                if not isinstance(e, dict) or not isinstance(e.get("name"), str) or \
                        not isinstance(e.get("isthing", True), bool):
                    raise ValueError(f"{path}: entry {k} must be {{\"name\": str, \"isthing\": bool}}, got {e!r}")
                (things if e.get("isthing", True) else stuff).append(e["name"])
        else:
            for k, line in enumerate(text.splitlines(), 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                kind, sep, name = line.partition(":")
                if sep and kind.strip().lower() in ("thing", "stuff"):
                    (things if kind.strip().lower() == "thing" else stuff).append(name)
                else:
                    things.append(line)
        try:
            return cls.from_lists(things, stuff)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc


@dataclass
class Segment:
    """One predicted segment (panoptic), detection (instance) or class region (semantic).

    Args:
        id: its id in :attr:`Prediction.segment_ids` (panoptic, semantic), or its index (instance).
        label: index into the vocabulary.
        name: the class name, as given.
        isthing: whether the class is a thing.
        score: confidence (panoptic: class probability; instance: class x mask score; semantic:
            mean per-pixel class score over the region).
        area: pixels.
        bbox: ``[x, y, w, h]`` of the mask.
    """

    id: int
    label: int
    name: str
    isthing: bool
    score: float
    area: int
    bbox: list[float]


@dataclass
class Prediction:
    """The result for one image.

    Args:
        task: ``panoptic`` | ``instance`` | ``semantic``.
        height, width: the image size.
        segments: the segments / detections / class regions.
        segment_ids: ``[H, W]`` int32 segment id per pixel (0 = none; panoptic and semantic).
        masks: ``[N, H, W]`` bool, one per detection (instance).
        source: where the image came from (path, or ``"<array>"``).
    """

    task: str
    height: int
    width: int
    segments: list[Segment]
    segment_ids: np.ndarray | None = None
    masks: np.ndarray | None = None
    source: str = "<array>"

    def mask(self, k: int) -> np.ndarray:
        """``[H, W]`` bool mask of ``segments[k]``."""
        if self.masks is not None:
            return self.masks[k]
        return self.segment_ids == self.segments[k].id

    def draw(self, image: Any, max_instances: int = 30) -> Image.Image:
        """An overlay: segments tinted, outlined and labelled "name score".

        Args:
            image: the image (path, ``[H, W, 3]`` array or PIL image).
            max_instances: instance task: draw the best-scoring ones only.
        """
        from vloss.viz import draw_instance_overlay, draw_panoptic_overlay

        rgb = _load(image)[0]
        if self.masks is None:
            infos = [{"id": s.id, "category_id": s.label, "score": s.score} for s in self.segments]
            return draw_panoptic_overlay(rgb, self.segment_ids, infos, self._names())
        order = sorted(range(len(self.segments)), key=lambda k: -self.segments[k].score)[:max_instances]
        masks = self.masks[order] if order else np.zeros((0, self.height, self.width), bool)
        return draw_instance_overlay(rgb, masks, [self.segments[k].label for k in order],
                                     [self.segments[k].score for k in order], self._names())

    def _names(self) -> dict[int, str]:
        return {s.label: s.name for s in self.segments}

    def to_json(self) -> dict[str, Any]:
        """JSON-able description (panoptic: ``segments_info`` as COCO panoptic with names; instance:
        RLE masks, boxes, scores, names; semantic: a legend).

        ``category_id`` is ``label + 1``: COCO files number categories from 1 (the semantic PNG
        uses the same numbers, 0 being "no class").
        """
        head = {"task": self.task, "source": self.source, "height": self.height, "width": self.width}
        if self.task == "instance":
            return {**head, "detections": [
                {"category_id": s.label + 1, "name": s.name, "score": s.score, "bbox": s.bbox, "area": s.area,
                 "segmentation": encode_rle(self.masks[k])} for k, s in enumerate(self.segments)]}
        key = "segments_info" if self.task == "panoptic" else "legend"
        return {**head, key: [{"id": s.id, "category_id": s.label + 1, "name": s.name, "isthing": int(s.isthing),
                               "iscrowd": 0, "score": s.score, "area": s.area, "bbox": s.bbox}
                              for s in self.segments]}

    def id_png(self) -> bytes:
        """Panoptic: the COCO-panoptic RGB PNG of :attr:`segment_ids`; semantic: a 16-bit label PNG."""
        import io

        buf = io.BytesIO()
        if self.task == "panoptic":
            Image.fromarray(id2rgb(self.segment_ids), "RGB").save(buf, format="PNG")
        elif self.task == "semantic":
            Image.fromarray(self.segment_ids.astype(np.uint16)).save(buf, format="PNG")
        else:
            raise ValueError("instance predictions have no id image; use the RLE masks")
        return buf.getvalue()


def _load(image: Any) -> tuple[np.ndarray, str]:
    """``([H, W, 3] uint8 RGB, source)`` from a path, an array or a PIL image."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image), str(image)
    if isinstance(image, Image.Image):
        return to_rgb(image), "<PIL image>"
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected an [H, W, 3] uint8 RGB array, got {arr.shape} {arr.dtype}")
    return arr, "<array>"


@dataclass
class PredictorSettings:
    """How the predictor runs.

    Args:
        task: ``panoptic`` | ``instance`` | ``semantic``.
        size: shorter side of the network input (None: the run's training size).
        max_size: cap on the longer side (None: 4 x size).
        batch_size: images per forward pass.
        threshold: panoptic: the minimum class probability of a kept query (Mask2Former: 0.8);
            instance: the minimum detection score (0 keeps the top-k).
        overlap_threshold: panoptic: the share of its mask a segment must keep (0.8).
        topk: instance: detections per image before the score threshold.
    """

    task: str = "panoptic"
    size: int | None = None
    max_size: int | None = None
    batch_size: int = 2
    threshold: float | None = None
    overlap_threshold: float = 0.8
    topk: int = 100

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.batch_size < 1 or (self.size is not None and self.size < 1) or self.topk < 1:
            raise ValueError("batch_size, size and topk must be positive")


class Predictor:
    """A trained network ready to segment images with any vocabulary.

    Args:
        model: the network (put in eval mode, moved to ``device``).
        job: the run's resolved :class:`vloss.config.TrainJobConfig` (input size, names, templates).
        device: ``cpu`` or ``cuda``.
        settings: task, sizes, thresholds.
    """

    def __init__(self, model, job, device: str | torch.device = "cpu", settings: PredictorSettings | None = None
                 ) -> None:
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.job = job
        self.settings = settings or PredictorSettings()
        self.size = self.settings.size or job.input.dense_size
        self.max_size = self.settings.max_size or 4 * self.size
        self.vocabulary: Vocabulary | None = None
        self._embeds: dict[tuple, torch.Tensor] = {}

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str = "cpu", preset: str | None = None,
                        overrides: Sequence[str] = (), **settings: Any) -> "Predictor":
        """Load a training checkpoint directory or a weights file (``weights_only=True``).

        Args:
            path: checkpoint directory (``state.pt`` + ``meta.json``) or weights file.
            device: ``cpu`` or ``cuda``.
            preset: for a weights file that stores no config: ``tiny`` | ``paper`` | ``baseline``.
            overrides: ``key=value`` overrides of the checkpoint's config (e.g. the templates).
            **settings: :class:`PredictorSettings` fields.

        Raises:
            FileNotFoundError, ValueError, WeightsError: a missing, unsafe or unfitting checkpoint
                (naming the file).
        """
        from vloss.checkpoint import STATE_FILE, load_model_checkpoint

        ckpt = load_model_checkpoint(path, preset, list(overrides))
        source = ckpt.path / STATE_FILE if ckpt.path.is_dir() else ckpt.path
        return cls.from_state(ckpt.job, ckpt.state_dict, device, source=str(source), **settings)

    @classmethod
    def from_state(cls, job, state_dict: dict, device: str = "cpu", source: str = "<state dict>",
                   **settings: Any) -> "Predictor":
        """Build from a resolved job config and the network's tensors (e.g. shipped to Ray actors).

        Args:
            job: a :class:`vloss.config.TrainJobConfig` or its dict.
            state_dict: the network's tensors.
            device: ``cpu`` or ``cuda``.
            source: where the tensors came from (named in shape errors).
            **settings: :class:`PredictorSettings` fields.
        """
        from vloss.checkpoint import build_inference_model
        from vloss.config import TrainJobConfig
        from vloss.config_io import from_dict

        if isinstance(job, dict):
            job = from_dict(job, TrainJobConfig)
        model = build_inference_model(job.model, state_dict, source)
        return cls(model, job, device, PredictorSettings(**settings))

    def set_vocabulary(self, things: Sequence[str] = (), stuff: Sequence[str] = (),
                       vocabulary: Vocabulary | None = None, templates: Sequence[str] | None = None
                       ) -> "Predictor":
        """Choose the classes to segment; their text embeddings are computed once and cached.

        Args:
            things, stuff: class names (things first in the label order), or
            vocabulary: a :class:`Vocabulary` (its order is kept).
            templates: prompt templates with ``{}`` (default: the checkpoint's ``model.text.templates``).

        Raises:
            ValueError: an empty vocabulary or duplicate names.
        """
        vocab = vocabulary or Vocabulary.from_lists(things, stuff)
        clean_names(vocab.names, self.job.model.text.names)  # names that clean to one text: an error now
        templates = tuple(templates) if templates is not None else tuple(self.job.model.text.templates)
        key = (tuple(vocab.names), tuple(vocab.isthing), templates)
        if key not in self._embeds:
            with torch.no_grad():
                self._embeds[key] = self.model.class_embeddings(vocab.names, templates).to(self.device)  # [C, Dt]
        self.vocabulary = vocab
        self._key = key
        return self

    @property
    def class_embeddings(self) -> torch.Tensor:
        """``[C, Dt]`` embeddings of the current vocabulary."""
        if self.vocabulary is None:
            raise ValueError("no vocabulary: call set_vocabulary(things=[...], stuff=[...]) first")
        return self._embeds[self._key]

    def __call__(self, images: Any) -> Prediction | list[Prediction]:
        """Segment one image or a list of images (paths, ``[H, W, 3]`` uint8 arrays, PIL images)."""
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        out: list[Prediction] = []
        for start in range(0, len(items), self.settings.batch_size):
            loaded = [_load(x) for x in items[start:start + self.settings.batch_size]]
            resized = [resize_for_inference(rgb, self.size, self.max_size) for rgb, _ in loaded]
            preds = self.predict_resized(resized, [rgb.shape[:2] for rgb, _ in loaded])
            for p, (_, src) in zip(preds, loaded):
                p.source = src
            out += preds
        return out[0] if single else out

    @torch.no_grad()
    def predict_resized(self, resized: Sequence[np.ndarray], sizes: Sequence[tuple[int, int]]) -> list[Prediction]:
        """Predict images already resized for the network, post-processed at their original ``sizes``.

        Args:
            resized: B ``[h_b, w_b, 3]`` uint8 images (e.g. from a Ray decode task).
            sizes: B original ``(H, W)``.
        """
        embeds = self.class_embeddings
        out, padded = forward_padded(self.model, resized, embeds, self.device)
        results = []
        for k, im in enumerate(resized):
            h, w = int(sizes[k][0]), int(sizes[k][1])
            logits = out["pred_logits"][k].float()  # [Q, C+1]
            masks = resize_mask_logits(out["pred_masks"][k].float(), (h, w), padded_size=padded,
                                       valid_size=im.shape[:2])  # [Q, H, W]
            results.append(self._post(logits, masks, h, w))
        return results

    def _post(self, logits: torch.Tensor, masks: torch.Tensor, h: int, w: int) -> Prediction:
        vocab, s = self.vocabulary, self.settings
        if s.task == "panoptic":
            thr = 0.8 if s.threshold is None else s.threshold
            seg_ids, infos = panoptic_inference(logits, masks, vocab.isthing, thr, s.overlap_threshold)
            ids = seg_ids.cpu().numpy().astype(np.int32)  # [H, W]
            segs = [Segment(int(i["id"]), int(i["category"]), vocab.names[i["category"]], bool(i["isthing"]),
                            float(i["score"]), int(i["area"]), mask_to_bbox(ids == i["id"])) for i in infos]
            return Prediction("panoptic", h, w, segs, segment_ids=ids)
        if s.task == "instance":
            res = instance_inference(logits, masks, topk=s.topk, is_thing=vocab.isthing if any(vocab.isthing) else None)
            keep = res["scores"] >= (s.threshold or 0.0)
            bin_masks = res["masks"][keep].cpu().numpy()  # [K, H, W] bool
            segs = [Segment(k, int(c), vocab.names[int(c)], vocab.isthing[int(c)], float(sc), int(m.sum()),
                            mask_to_bbox(m)) for k, (m, c, sc) in
                    enumerate(zip(bin_masks, res["labels"][keep].tolist(), res["scores"][keep].tolist()))]
            return Prediction("instance", h, w, segs, masks=bin_masks)
        scores = semantic_inference(logits, masks)  # [C, H, W]
        best, labels = scores.max(0)  # [H, W]
        label_map = labels.cpu().numpy().astype(np.int32)
        best_np = best.cpu().numpy()
        segs = []
        for c in np.unique(label_map).tolist():
            region = label_map == c
            segs.append(Segment(c + 1, c, vocab.names[c], vocab.isthing[c], float(best_np[region].mean()),
                                int(region.sum()), mask_to_bbox(region)))
        return Prediction("semantic", h, w, segs, segment_ids=label_map + 1)
