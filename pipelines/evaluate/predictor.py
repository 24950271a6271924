"""The predictor actor of the evaluation job: a :class:`vloss.inference.predictor.Predictor` built once per actor.

The network, the class embeddings of the evaluation set and the post-processing are the ones a
user gets from ``vloss.inference.predictor`` (one code path for prediction and evaluation); this actor
adds the dataset's side: category ids instead of vocabulary indices, a COCO-panoptic PNG +
segments per image (panoptic tasks) or up to ``topk`` RLE detections (instance tasks), and
one failing image isolated instead of losing its batch.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

import numpy as np
import torch
from PIL import Image

from pipelines.common.actor_pool import ActorStage, resolve_weights
from pipelines.common.resources import device_for
from pipelines.evaluate.data import vocabulary_sha256
from vloss.config import ModelConfig, TrainJobConfig
from vloss.config_io import from_dict
from vloss.data.masks import encode_rle, id2rgb
from vloss.inference.predictor import Prediction, Predictor, Vocabulary


def encode_png(seg_ids: np.ndarray) -> bytes:
    """[H, W] segment ids -> COCO-panoptic RGB PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(id2rgb(seg_ids), "RGB").save(buf, format="PNG")
    return buf.getvalue()


class EvalPredictor(ActorStage):
    """Ray Data actor stage: the network and the class embeddings, built once per actor.

    Output columns: ``png`` (panoptic PNG bytes), ``payload`` (JSON: panoptic segments, or instance
    detections), ``ids`` (with ``return_ids``) and ``vocab_sha256`` (what this actor embedded).

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
        gpus: GPUs this actor reserves; with any, the network runs on CUDA.
        return_ids: panoptic: also return each image's ``[H, W]`` int32 segment ids (raw bytes,
            column ``ids``) for scoring in memory (:mod:`pipelines.evaluate.streaming_pq`).
    """

    passthrough = ("index",)
    what = "inference"

    def __init__(self, model_config: dict, weights: Any, source: str, names: list[str], category_ids: list[int],
                 is_thing: list[bool], templates: list[str], panoptic: bool, topk: int = 100,
                 object_mask_threshold: float = 0.8, overlap_threshold: float = 0.8, gpus: float = 0.0,
                 return_ids: bool = False) -> None:
        torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
        job = TrainJobConfig(model=from_dict(model_config, ModelConfig))
        self.predictor = Predictor.from_state(
            job, resolve_weights(weights), device_for(gpus), source=source, task="panoptic" if panoptic else "instance",
            threshold=float(object_mask_threshold) if panoptic else 0.0,
            overlap_threshold=float(overlap_threshold), topk=int(topk))
        # the dataset's order is the label order (no things-first reordering)
        self.predictor.set_vocabulary(vocabulary=Vocabulary(list(names), [bool(t) for t in is_thing]),
                                      templates=list(templates))
        self.category_ids = [int(c) for c in category_ids]
        self.panoptic = panoptic
        self.return_ids = bool(return_ids and panoptic)
        self.vocab_sha256 = vocabulary_sha256(list(names), tuple(templates))
        self.outputs = {"png": b"", "payload": "", "ids": b"", "vocab_sha256": self.vocab_sha256}

    @property
    def class_embeds(self) -> torch.Tensor:
        """``[C, Dt]`` embeddings of the evaluation set's classes."""
        return self.predictor.class_embeddings

    def prepare(self, batch: dict[str, np.ndarray], i: int) -> tuple[np.ndarray, tuple[int, int]]:
        image = np.frombuffer(batch["pixels"][i], dtype=np.uint8).reshape(int(batch["rh"][i]), int(batch["rw"][i]), 3)
        return image, (int(batch["height"][i]), int(batch["width"][i]))

    def run(self, inputs: list[tuple[np.ndarray, tuple[int, int]]]) -> list[Prediction]:
        """The network on resized images, each post-processed at its original size."""
        return self.predictor.predict_resized([x[0] for x in inputs], [x[1] for x in inputs])

    def encode(self, pred: Prediction, batch: dict[str, np.ndarray] | None = None, i: int = 0) -> dict[str, Any]:
        if self.panoptic:
            info = [{"id": s.id, "category_id": self.category_ids[s.label], "isthing": int(s.isthing), "iscrowd": 0,
                     "area": s.area, "bbox": s.bbox, "score": round(s.score, 6)} for s in pred.segments]
            ids = pred.segment_ids.astype(np.int32)  # [H, W]
            return {"png": encode_png(ids), "payload": json.dumps(info),
                    "ids": ids.tobytes() if self.return_ids else b""}
        dets = [{"category_id": self.category_ids[s.label], "segmentation": encode_rle(pred.masks[k]),
                 "score": s.score} for k, s in enumerate(pred.segments)]
        return {"png": b"", "payload": json.dumps(dets), "ids": b""}
