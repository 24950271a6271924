"""The predictor actor of the evaluation job: network and class embeddings built once per actor.

It embeds the evaluation set's class names once, pads each batch to a multiple of
``model.size_divisor``, runs the model and post-processes each image at its original size: a
COCO-panoptic PNG + segments (panoptic tasks) or up to ``topk`` RLE detections (instance tasks).
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

import numpy as np
import torch
from PIL import Image

from pipelines.common.resources import device_for
from pipelines.evaluate.data import vocabulary_sha256
from pipelines.evaluate.model import build_eval_model
from vloss.config import ModelConfig
from vloss.config_io import from_dict
from vloss.data.masks import encode_rle, id2rgb, mask_to_bbox
from vloss.inference import forward_padded, instance_inference, panoptic_inference, resize_mask_logits


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
        gpus: GPUs this actor reserves; with any, the network runs on CUDA.
    """

    def __init__(self, model_config: dict, weights: Any, source: str, names: list[str], category_ids: list[int],
                 is_thing: list[bool], templates: list[str], panoptic: bool, topk: int = 100,
                 object_mask_threshold: float = 0.8, overlap_threshold: float = 0.8, gpus: float = 0.0) -> None:
        if isinstance(weights, list) and len(weights) == 1:  # a Ray object reference, put once by the driver
            import ray

            weights = ray.get(weights[0])
        self.device = torch.device(device_for(gpus))
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
        out, padded = forward_padded(self.model, images, self.class_embeds, self.device)
        results = []
        for k, im in enumerate(images):
            cls_logits = out["pred_logits"][k]  # [Q, C+1]
            masks = resize_mask_logits(out["pred_masks"][k], sizes[k], padded_size=padded,
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
