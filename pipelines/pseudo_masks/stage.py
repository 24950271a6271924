"""The teacher actor of the pseudo-mask job: loaded once per actor, one mask per given box."""

from __future__ import annotations

import json

import numpy as np

from pipelines.common.actor_pool import ActorStage
from pipelines.common.resources import device_for
from pipelines.common.storage import locate
from vloss.data.masks import encode_rle
from vloss.teacher.config import TeacherConfig, build_teacher


class PseudoMaskStage(ActorStage):
    """Ray actor stage: the teacher, loaded once, predicts a mask per given box.

    Output column ``instances_json``: per image, a JSON list of its boxes' instances (COCO RLE
    ``counts`` of the full-size mask, area, score, the teacher's own label).

    Args:
        teacher: ``TeacherConfig`` as a dict.
        checkpoint: state-dict path/URI (read through ``pyarrow.fs``), or None for ``box``.
        gpus: GPUs this actor reserves; with any, the teacher runs on CUDA.
    """

    passthrough = ("image_id", "shard", "file_name", "height", "width")
    outputs = {"instances_json": ""}
    what = "teacher"

    def __init__(self, teacher: dict, checkpoint: str | None, gpus: float = 0.0) -> None:
        config = TeacherConfig(**teacher)
        data = locate(checkpoint).read_bytes() if checkpoint and config.needs_checkpoint else None
        self.teacher = build_teacher(config, data, checkpoint_name=checkpoint, device=device_for(gpus))

    def prepare(self, batch: dict[str, np.ndarray], i: int) -> tuple[np.ndarray, np.ndarray, dict]:
        h, w = int(batch["height"][i]), int(batch["width"][i])
        image = np.frombuffer(batch["pixels"][i], dtype=np.uint8).reshape(h, w, 3)  # [H, W, 3]
        meta = json.loads(batch["boxes_json"][i])
        boxes = np.array([[b[0], b[1], b[0] + b[2], b[1] + b[3]] for b in meta["bbox"]],
                         dtype=np.float64).reshape(-1, 4)  # [N, 4] xyxy
        return image, boxes, meta

    def run(self, inputs: list[tuple[np.ndarray, np.ndarray, dict]]) -> list:
        outs = self.teacher.predict([x[0] for x in inputs], [x[1] for x in inputs])
        return [(out, x[2]) for out, x in zip(outs, inputs)]

    def encode(self, output, batch: dict[str, np.ndarray], i: int) -> dict[str, str]:
        out, meta = output
        insts = []
        for k in range(len(meta["id"])):  # one full-size mask at a time: memory stays O(H x W)
            insts.append({"id": meta["id"][k], "category_id": meta["category_id"][k],
                          "bbox": meta["bbox"][k], "counts": encode_rle(out.mask(k))["counts"],
                          "area": out.area(k), "score": float(out.scores[k]),
                          "clipped": meta["clipped"][k], "teacher_label": int(out.labels[k])})
        return {"instances_json": json.dumps(insts)}
