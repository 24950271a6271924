"""The predictor actor of the batch-prediction job: the network and the vocabulary's embeddings, once per actor."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from pipelines.common.resources import device_for
from vloss.data.masks import encode_rle
from vloss.inference.predictor import Predictor, Vocabulary


def prediction_record(pred) -> list[dict[str, Any]]:
    """The segments of a :class:`vloss.inference.predictor.Prediction` as shard rows (RLE counts as ASCII bytes)."""
    return [{"id": int(s.id), "label": int(s.label), "name": s.name, "isthing": bool(s.isthing),
             "score": float(s.score), "area": int(s.area), "bbox": [float(v) for v in s.bbox],
             "segmentation": encode_rle(pred.mask(k))["counts"]} for k, s in enumerate(pred.segments)]


class PredictStage:
    """Ray Data actor stage.

    Args:
        job: the checkpoint's resolved config (dict).
        weights: a one-element list holding a Ray object reference to the network's tensors.
        vocabulary: ``{"names": [...], "isthing": [...]}``.
        settings: :class:`vloss.inference.predictor.PredictorSettings` fields.
        gpus: GPUs this actor reserves; with any, it predicts on CUDA.
    """

    def __init__(self, job: dict, weights: Any, vocabulary: dict, settings: dict, gpus: float = 0.0) -> None:
        if isinstance(weights, list) and len(weights) == 1:
            import ray

            weights = ray.get(weights[0])
        self.predictor = Predictor.from_state(job, weights, device_for(gpus), **settings)
        self.predictor.set_vocabulary(vocabulary=Vocabulary(list(vocabulary["names"]), list(vocabulary["isthing"])))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["index"])
        errors = [str(e) for e in batch["error"]]
        segments, overlays = [""] * n, [b""] * n
        todo = [i for i in range(n) if not errors[i]]
        resized = [np.frombuffer(batch["pixels"][i], np.uint8).reshape(int(batch["rh"][i]), int(batch["rw"][i]), 3)
                   for i in todo]
        sizes = [(int(batch["height"][i]), int(batch["width"][i])) for i in todo]
        try:
            preds = self.predictor.predict_resized(resized, sizes) if todo else []
        except Exception:  # isolate the image that fails instead of losing the batch
            preds = []
            for im, sz in zip(resized, sizes):
                try:
                    preds.append(self.predictor.predict_resized([im], [sz])[0])
                except Exception as exc:
                    preds.append(f"prediction failed: {type(exc).__name__}: {exc}")
        for i, p in zip(todo, preds):
            if isinstance(p, str):
                errors[i] = p
                continue
            segments[i] = json.dumps(prediction_record(p))
            if "original" in batch:
                h, w = sizes[todo.index(i)]
                rgb = np.frombuffer(batch["original"][i], np.uint8).reshape(h, w, 3)
                buf = io.BytesIO()
                p.draw(rgb).save(buf, format="PNG")
                overlays[i] = buf.getvalue()
        return {"index": batch["index"], "height": batch["height"], "width": batch["width"],
                "error": np.array(errors, dtype=object), "segments": np.array(segments, dtype=object),
                "overlay": np.array(overlays, dtype=object)}
