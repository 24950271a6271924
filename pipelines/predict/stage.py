"""The predictor actor of the batch-prediction job: the network and the vocabulary's embeddings, once per actor."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from pipelines.common.actor_pool import ActorStage, resolve_weights
from pipelines.common.resources import device_for
from vloss.data.masks import encode_rle
from vloss.inference.predictor import Predictor, Vocabulary


def prediction_record(pred) -> list[dict[str, Any]]:
    """The segments of a :class:`vloss.inference.predictor.Prediction` as shard rows (RLE counts as ASCII bytes)."""
    return [{"id": int(s.id), "label": int(s.label), "name": s.name, "isthing": bool(s.isthing),
             "score": float(s.score), "area": int(s.area), "bbox": [float(v) for v in s.bbox],
             "segmentation": encode_rle(pred.mask(k))["counts"]} for k, s in enumerate(pred.segments)]


class PredictStage(ActorStage):
    """Ray Data actor stage: ``segments`` (JSON of :func:`prediction_record`) and, when the decode kept
    the original pixels, ``overlay`` (PNG bytes) per image.

    Args:
        job: the checkpoint's resolved config (dict).
        weights: the state dict, or a one-element list holding its Ray object reference.
        vocabulary: ``{"names": [...], "isthing": [...]}``.
        settings: :class:`vloss.inference.predictor.PredictorSettings` fields.
        gpus: GPUs this actor reserves; with any, it predicts on CUDA.
    """

    passthrough = ("index", "height", "width")
    outputs = {"segments": "", "overlay": b""}
    what = "prediction"

    def __init__(self, job: dict, weights: Any, vocabulary: dict, settings: dict, gpus: float = 0.0) -> None:
        self.predictor = Predictor.from_state(job, resolve_weights(weights), device_for(gpus), **settings)
        self.predictor.set_vocabulary(vocabulary=Vocabulary(list(vocabulary["names"]), list(vocabulary["isthing"])))

    def prepare(self, batch: dict[str, np.ndarray], i: int) -> tuple[np.ndarray, tuple[int, int]]:
        resized = np.frombuffer(batch["pixels"][i], np.uint8).reshape(int(batch["rh"][i]), int(batch["rw"][i]), 3)
        return resized, (int(batch["height"][i]), int(batch["width"][i]))

    def run(self, inputs: list[tuple[np.ndarray, tuple[int, int]]]) -> list:
        return self.predictor.predict_resized([x[0] for x in inputs], [x[1] for x in inputs])

    def encode(self, pred, batch: dict[str, np.ndarray], i: int) -> dict[str, Any]:
        values: dict[str, Any] = {"segments": json.dumps(prediction_record(pred))}
        if "original" in batch:
            h, w = int(batch["height"][i]), int(batch["width"][i])
            rgb = np.frombuffer(batch["original"][i], np.uint8).reshape(h, w, 3)  # [H, W, 3]
            buf = io.BytesIO()
            pred.draw(rgb).save(buf, format="PNG")
            values["overlay"] = buf.getvalue()
        return values
