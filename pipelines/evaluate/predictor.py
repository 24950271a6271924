"""Batch inference of an evaluation job: checkpoint loading and the two Ray Data stages.

* :func:`load_eval_model` reads a training checkpoint directory (``state.pt`` + ``meta.json``
  written by the trainer) or a model-weights file (``vloss.model.weights.save_model_weights``)
  with ``weights_only=True`` and returns the network plus what the job needs to know about it
  (resolved config, default input size, prompt templates). Wrong shapes fail with
  ``WeightsError`` naming the file and parameter.
* :func:`decode_eval_images` (Ray tasks) reads and decodes each image and resizes it so that
  its shorter side is ``size`` (longer side capped at ``max_size``); an unreadable image, or
  one whose size disagrees with the annotation file, becomes an ``error`` on its row.
* :class:`EvalPredictor` (actor pool) loads the network once, embeds the evaluation set's
  class names once, pads each batch to a multiple of ``model.size_divisor``, runs the model
  and post-processes each image at its original size: a COCO-panoptic PNG + segments
  (panoptic tasks) or up to ``topk`` RLE detections (instance tasks).
"""

from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from pipelines.eval_data import vocabulary_sha256
from pipelines.io import locate
from vloss.config import ModelConfig, from_dict, to_dict
from vloss.data.masks import encode_rle, id2rgb, mask_to_bbox
from vloss.data.transforms import normalize_images
from vloss.inference import instance_inference, panoptic_inference, resize_mask_logits
from vloss.model import VLOSS, WeightsError
from vloss.model.weights import load_checked


@dataclass
class LoadedCheckpoint:
    """A checkpoint as the evaluation job uses it.

    Args:
        path: the checkpoint directory or weights file.
        kind: ``"training checkpoint"`` or ``"weights file"``.
        model_config: the network settings (weight-file fields cleared: the checkpoint has them all).
        state_dict: the network's tensors (CPU).
        config: the resolved configuration to record in the report.
        default_size: the training input size of the run (shorter side at evaluation).
        templates: the prompt templates the run was trained with.
        params: parameter count of the network.
    """

    path: Path
    kind: str
    model_config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    config: dict[str, Any]
    default_size: int
    templates: tuple[str, ...]
    params: int


def _inference_model_config(cfg: ModelConfig) -> ModelConfig:
    """The config without weight-file paths (those files may not exist where we evaluate)."""
    return replace(cfg, backbone=replace(cfg.backbone, weights=None), text=replace(cfg.text, weights=None))


def build_eval_model(model_config: ModelConfig, state_dict: dict[str, torch.Tensor], source: str | Path) -> VLOSS:
    """A VLOSS network in eval mode with ``state_dict`` loaded strictly (shape-checked).

    Args:
        model_config: network settings.
        state_dict: tensors by parameter name.
        source: the file they came from (named in errors).
    """
    model = VLOSS(_inference_model_config(model_config))
    load_checked(model, state_dict, source, "VLOSS model")
    model.text.clear_cache()
    return model.eval()


def load_eval_model(checkpoint: str | Path, config: str | None = None,
                    overrides: list[str] | None = None) -> tuple[VLOSS, LoadedCheckpoint]:
    """Load a checkpoint for evaluation.

    Args:
        checkpoint: a training checkpoint directory (``state.pt`` + ``meta.json``) or a
            weights file saved by ``save_model_weights``.
        config: for a weights file: preset ``tiny`` | ``paper`` | ``baseline`` (default: the
            config stored in the file). Ignored for a checkpoint directory, whose
            ``meta.json`` holds the resolved config.
        overrides: ``key=value`` overrides applied to the preset (weights files only).

    Returns:
        (the network in eval mode, a :class:`LoadedCheckpoint`).

    Raises:
        FileNotFoundError: no such checkpoint.
        WeightsError: tensors that do not fit the configured network (names file and parameter).
        ValueError: a weights file without stored config and no ``config`` given.
    """
    from pipelines.train_config import job_from_dict, resolve
    from pipelines.train_loop import META_FILE, STATE_FILE, load_training_state

    path = Path(checkpoint)
    if path.is_dir():
        if not (path / STATE_FILE).is_file() or not (path / META_FILE).is_file():
            raise FileNotFoundError(f"{path}: a training checkpoint directory needs {STATE_FILE} and {META_FILE}")
        state, meta = load_training_state(str(path))
        if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
            raise WeightsError(f"{path / STATE_FILE}: no 'model' state dict inside")
        if not isinstance(meta.get("config"), dict):
            raise ValueError(f"{path / META_FILE}: no 'config' (the training job's resolved config)")
        job = job_from_dict(meta["config"])
        model = build_eval_model(job.model, state["model"], path / STATE_FILE)
        info = LoadedCheckpoint(path, "training checkpoint", job.model, state["model"], to_dict(job),
                                job.input.dense_size, tuple(job.train.templates), _params(model))
        return model, info
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict):
        raise WeightsError(f"{path}: expected a state dict (mapping), found {type(payload).__name__}")
    sd = payload["model"] if isinstance(payload.get("model"), dict) else payload
    if config is not None:
        job = resolve(config, overrides)
    elif isinstance(payload.get("config"), dict):
        stored = payload["config"]
        job = job_from_dict(stored if "model" in stored else {"model": stored})
        if "input" not in stored:
            job = _with_preset_run_settings(job)
        if overrides:
            from vloss.config import apply_overrides

            apply_overrides(job, list(overrides))
    else:
        raise ValueError(f"{path}: the weights file stores no config; pass --config tiny|paper|baseline")
    model = build_eval_model(job.model, sd, path)
    info = LoadedCheckpoint(path, "weights file", job.model, sd, to_dict(job), job.input.dense_size,
                            tuple(job.train.templates), _params(model))
    return model, info


def _with_preset_run_settings(job):
    """A weights file stores only ``VLOSSConfig`` (no input size / templates): take those from
    the preset whose network is the stored one (e.g. ``tiny`` -> 128 px), else keep the defaults."""
    from pipelines.train_config import job_preset

    model = to_dict(job.model)
    for name in ("tiny", "paper", "baseline"):
        ref = job_preset(name)
        if to_dict(ref.model) == model:
            job.input, job.train.templates = ref.input, ref.train.templates
            break
    return job


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- Ray stages


def resized_shape(height: int, width: int, size: int, max_size: int) -> tuple[int, int]:
    """(h, w) with the shorter side ``size`` and the longer side at most ``max_size``."""
    scale = size / min(height, width)
    if max(height, width) * scale > max_size:
        scale = max_size / max(height, width)
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def decode_eval_images(batch: dict[str, np.ndarray], size: int, max_size: int) -> dict[str, np.ndarray]:
    """Ray task: read, decode and resize each image; failures become an ``error`` string.

    Args:
        batch: columns ``index, path, height, width``.
        size: shorter side of the network input.
        max_size: cap on the longer side.

    Returns:
        ``index, height, width`` plus ``pixels`` (``rh*rw*3`` uint8 bytes, empty on failure),
        ``rh, rw`` (resized size) and ``error``.
    """
    pixels, rhs, rws, errors = [], [], [], []
    for path, h, w in zip(batch["path"], batch["height"], batch["width"]):
        try:
            data = locate(str(path)).read_bytes()
            with Image.open(io.BytesIO(data)) as im:
                rgb = im.convert("RGB")
            if (rgb.height, rgb.width) != (int(h), int(w)):
                raise ValueError(f"image is {rgb.width}x{rgb.height} but the annotation file says {int(w)}x{int(h)}")
            rh, rw = resized_shape(int(h), int(w), size, max_size)
            arr = np.asarray(rgb.resize((rw, rh), resample=Image.BILINEAR))  # [rh, rw, 3] uint8
            pixels.append(arr.tobytes())
            rhs.append(rh)
            rws.append(rw)
            errors.append("")
        except Exception as exc:  # missing file, corrupt image, size mismatch: a counted skip
            pixels.append(b"")
            rhs.append(0)
            rws.append(0)
            errors.append(f"{path}: {type(exc).__name__}: {exc}")
    return {"index": batch["index"], "height": batch["height"], "width": batch["width"],
            "pixels": np.array(pixels, dtype=object), "rh": np.array(rhs, dtype=np.int64),
            "rw": np.array(rws, dtype=np.int64), "error": np.array(errors, dtype=object)}


def encode_png(seg_ids: np.ndarray) -> bytes:
    """[H, W] segment ids -> COCO-panoptic RGB PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(id2rgb(seg_ids), "RGB").save(buf, format="PNG")
    return buf.getvalue()


class EvalPredictor:
    """Ray Data actor stage: the network and the class embeddings, built once per actor.

    Args:
        model_config: ``ModelConfig`` as a dict.
        weights: the state dict, or a one-element list holding a Ray object reference to it
            (put once by the driver; nested so that the reference is not an actor argument).
        source: checkpoint path, for error messages.
        names: the evaluation set's class names (the open vocabulary).
        category_ids: the dataset's category ids, aligned with ``names``.
        is_thing: thing flags aligned with ``names``.
        templates: prompt templates for the class embeddings.
        panoptic: panoptic output (else instance detections).
        topk: detections per image (instance tasks).
        object_mask_threshold, overlap_threshold: panoptic inference thresholds.
    """

    def __init__(self, model_config: dict, weights: Any, source: str, names: list[str], category_ids: list[int],
                 is_thing: list[bool], templates: list[str], panoptic: bool, topk: int = 100,
                 object_mask_threshold: float = 0.8, overlap_threshold: float = 0.8) -> None:
        try:
            import ray

            if isinstance(weights, list) and len(weights) == 1 and isinstance(weights[0], ray.ObjectRef):
                weights = ray.get(weights[0])
        except ImportError:  # plain (non-Ray) use with a state dict
            pass
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
        self.model = build_eval_model(from_dict(model_config, ModelConfig), weights, source).to(self.device)
        self.category_ids = [int(c) for c in category_ids]
        self.is_thing = [bool(t) for t in is_thing]
        self.panoptic = panoptic
        self.topk = int(topk)
        self.thresholds = (float(object_mask_threshold), float(overlap_threshold))
        with torch.no_grad():  # once per actor: the vocabulary never changes during a job
            self.class_embeds = self.model.class_embeddings(list(names), tuple(templates))  # [C, Dt]
        self.vocab_sha256 = vocabulary_sha256(list(names), tuple(templates))

    @torch.no_grad()
    def _predict(self, images: list[np.ndarray], sizes: list[tuple[int, int]]) -> list[dict[str, Any]]:
        """Run the network on resized images; post-process each at its original ``sizes``."""
        div = self.model.size_divisor
        hp = int(math.ceil(max(im.shape[0] for im in images) / div) * div)
        wp = int(math.ceil(max(im.shape[1] for im in images) / div) * div)
        padded = np.zeros((len(images), hp, wp, 3), dtype=np.uint8)  # [B, Hp, Wp, 3], zero padding as in training
        for k, im in enumerate(images):
            padded[k, : im.shape[0], : im.shape[1]] = im
        x = normalize_images(padded).to(self.device)  # [B, 3, Hp, Wp]
        out = self.model(x, self.class_embeds)
        results = []
        for k, im in enumerate(images):
            cls_logits = out["pred_logits"][k]  # [Q, C+1]
            masks = resize_mask_logits(out["pred_masks"][k], sizes[k], padded_size=(hp, wp),
                                       valid_size=im.shape[:2])  # [Q, H, W]
            results.append(self._panoptic(cls_logits, masks) if self.panoptic else self._instances(cls_logits, masks))
        return results

    def _panoptic(self, cls_logits: torch.Tensor, masks: torch.Tensor) -> dict[str, Any]:
        seg_ids, segments = panoptic_inference(cls_logits, masks, self.is_thing, *self.thresholds)
        ids = seg_ids.cpu().numpy()  # [H, W] int32
        info = [{"id": int(s["id"]), "category_id": self.category_ids[s["category"]], "isthing": int(s["isthing"]),
                 "iscrowd": 0, "area": int(s["area"]), "bbox": mask_to_bbox(ids == s["id"]),
                 "score": round(float(s["score"]), 6)} for s in segments]
        return {"png": encode_png(ids), "payload": json.dumps(info)}

    def _instances(self, cls_logits: torch.Tensor, masks: torch.Tensor) -> dict[str, Any]:
        res = instance_inference(cls_logits, masks, topk=self.topk)
        bin_masks = res["masks"].cpu().numpy()  # [K, H, W] bool
        dets = [{"category_id": self.category_ids[int(c)], "segmentation": encode_rle(m), "score": float(s)}
                for m, c, s in zip(bin_masks, res["labels"].tolist(), res["scores"].tolist())]
        return {"png": b"", "payload": json.dumps(dets)}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["index"])
        errors = [str(e) for e in batch["error"]]
        pngs, payloads = [b""] * n, [""] * n
        todo = [i for i in range(n) if not errors[i]]
        images = [np.frombuffer(batch["pixels"][i], dtype=np.uint8).reshape(int(batch["rh"][i]), int(batch["rw"][i]), 3)
                  for i in todo]
        sizes = [(int(batch["height"][i]), int(batch["width"][i])) for i in todo]
        if todo:
            try:
                outs = self._predict(images, sizes)
            except Exception:  # isolate the image that fails instead of losing the batch
                outs = []
                for im, sz in zip(images, sizes):
                    try:
                        outs.append(self._predict([im], [sz])[0])
                    except Exception as exc:
                        outs.append({"error": f"inference failed: {type(exc).__name__}: {exc}"})
            for i, o in zip(todo, outs):
                if "error" in o:
                    errors[i] = o["error"]
                else:
                    pngs[i], payloads[i] = o["png"], o["payload"]
        return {"index": batch["index"], "error": np.array(errors, dtype=object),
                "png": np.array(pngs, dtype=object), "payload": np.array(payloads, dtype=object),
                "vocab_sha256": np.array([self.vocab_sha256] * n, dtype=object)}
