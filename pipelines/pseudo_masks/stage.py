"""The teacher actor of the pseudo-mask job: loaded once per actor, one mask per given box."""

from __future__ import annotations

import json

import numpy as np

from pipelines.common.resources import device_for
from pipelines.common.storage import locate
from vloss.data.masks import encode_rle
from vloss.teacher.config import TeacherConfig, build_teacher


class PseudoMaskStage:
    """Ray actor stage: the teacher, loaded once, predicts a mask per given box.

    Args:
        teacher: ``TeacherConfig`` as a dict.
        checkpoint: state-dict path/URI (read through ``pyarrow.fs``), or None for ``box``.
        gpus: GPUs this actor reserves; with any, the teacher runs on CUDA.
    """

    def __init__(self, teacher: dict, checkpoint: str | None, gpus: float = 0.0) -> None:
        config = TeacherConfig(**teacher)
        data = locate(checkpoint).read_bytes() if checkpoint and config.needs_checkpoint else None
        self.teacher = build_teacher(config, data, checkpoint_name=checkpoint, device=device_for(gpus))

    def _predict_rows(self, images: list[np.ndarray], boxes: list[np.ndarray]):
        try:
            return [(o, "") for o in self.teacher.predict(images, boxes)]
        except Exception:  # isolate the failing image instead of losing the batch
            outs = []
            for im, bx in zip(images, boxes):
                try:
                    outs.append((self.teacher.predict([im], [bx])[0], ""))
                except Exception as exc:
                    outs.append((None, f"teacher failed: {type(exc).__name__}: {exc}"))
            return outs

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["image_id"])
        errors = [str(e) for e in batch["error"]]
        instances_json = [""] * n
        todo = [i for i in range(n) if not errors[i]]
        images, boxes, metas = [], [], []
        for i in todo:
            h, w = int(batch["height"][i]), int(batch["width"][i])
            images.append(np.frombuffer(batch["pixels"][i], dtype=np.uint8).reshape(h, w, 3))
            meta = json.loads(batch["boxes_json"][i])
            metas.append(meta)
            boxes.append(np.array([[b[0], b[1], b[0] + b[2], b[1] + b[3]] for b in meta["bbox"]],
                                  dtype=np.float64).reshape(-1, 4))
        for i, meta, (out, err) in zip(todo, metas, self._predict_rows(images, boxes)):
            if out is None:
                errors[i] = err
                continue
            insts = []
            for k in range(len(meta["id"])):  # one full-size mask at a time: memory stays O(H x W)
                insts.append({"id": meta["id"][k], "category_id": meta["category_id"][k],
                              "bbox": meta["bbox"][k], "counts": encode_rle(out.mask(k))["counts"],
                              "area": out.area(k), "score": float(out.scores[k]),
                              "clipped": meta["clipped"][k], "teacher_label": int(out.labels[k])})
            instances_json[i] = json.dumps(insts)
        return {"image_id": batch["image_id"], "shard": batch["shard"], "file_name": batch["file_name"],
                "height": batch["height"], "width": batch["width"],
                "error": np.array(errors, dtype=object), "instances_json": np.array(instances_json, dtype=object)}
