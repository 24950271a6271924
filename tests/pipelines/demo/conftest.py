"""A demo output folder with everything the page reads, built from the session's synthetic world."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image


def page_summary() -> dict:
    """A demo summary with known numbers (percent on the page: 50.0, 15.0, ...)."""
    pan = {"pq": 0.5, "pq_th": 0.4, "pq_st": 0.6, "seen": {"pq": 0.55, "pq_th": 0.45, "pq_st": 0.65},
           "unseen": {"pq": 0.1, "pq_th": 0.05, "pq_st": None}}
    return {"seconds": {"total": 600.0}, "sets": {
        "coco_panoptic": pan, "ade20k_panoptic": pan,
        "lvis": {"AP": 0.3, "APr": 0.2, "APc": 0.3, "APf": 0.4, "seen": {"AP": 0.35}, "unseen": {"AP": 0.15}}},
        "targets": {"lvis.AP": {"target": 0.3, "value": 0.3, "met": True}}}


@pytest.fixture
def demo_out(synthetic_world: Path, tmp_path: Path) -> Path:
    """``OUT`` as ``make demo`` leaves it for the page, the ADE20K-style "prediction" being the
    ground truth itself (so every unseen class in the truth is predicted)."""
    world = json.loads((synthetic_world / "world.json").read_text())
    paths = world["paths"]["ade20k_panoptic"]
    out = tmp_path / "demo_out"
    pred = out / "eval" / "ade20k_panoptic" / "predictions"
    pred.mkdir(parents=True)
    gt = json.loads((synthetic_world / paths["val_json"]).read_text())
    (pred / "panoptic.json").write_text(json.dumps({"annotations": gt["annotations"],
                                                    "categories": gt["categories"]}))
    shutil.copytree(synthetic_world / paths["val_png_dir"], pred / "panoptic")
    (out / "run").mkdir()
    (out / "run" / "metrics.jsonl").write_text("\n".join(json.dumps(
        {"step": s, "val/pq": v, "val/pq_th": v / 2, "val/pq_st": v * 1.5}) for s, v in ((10, 0.1), (20, 0.2))))
    (out / "towers").mkdir()
    Image.new("RGB", (40, 30), (200, 0, 0)).save(out / "towers" / "loss.png")
    return out
