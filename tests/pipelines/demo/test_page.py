"""The demo's page: every picture it names exists and decodes, and the grid says what truth and prediction hold."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser

from PIL import Image

from pipelines.demo.page import UNSEEN_MARK, write_page


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])
        assert tag not in ("script", "link", "iframe"), tag  # nothing runs or is fetched


def _summary() -> dict:
    pan = {"pq": 0.5, "pq_th": 0.4, "pq_st": 0.6, "seen": {"pq": 0.55, "pq_th": 0.45, "pq_st": 0.65},
           "unseen": {"pq": 0.1, "pq_th": 0.05, "pq_st": None}}
    return {"seconds": {"total": 600.0}, "sets": {
        "coco_panoptic": pan, "ade20k_panoptic": pan,
        "lvis": {"AP": 0.3, "APr": 0.2, "APc": 0.3, "APf": 0.4, "seen": {"AP": 0.35}, "unseen": {"AP": 0.15}}},
        "targets": {"lvis.AP": {"target": 0.3, "value": 0.3, "met": True}}}


def test_page_pictures_load_and_the_grid_reports_unseen_classes(synthetic_world, tmp_path):
    world = json.loads((synthetic_world / "world.json").read_text())
    paths = world["paths"]["ade20k_panoptic"]
    out = tmp_path / "demo_out"
    # the "prediction" is the ground truth itself, so every unseen class in the truth is predicted
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

    page = write_page(out, synthetic_world, _summary(), count=4)
    text = page.read_text()
    parser = _Images()
    parser.feed(text)
    assert len(parser.sources) == 2 + 4  # two curves, four val images
    for src in parser.sources:
        assert not src.startswith(("http:", "https:", "/"))  # relative: readable offline
        with Image.open(out / src) as im:
            im.load()
            assert im.width > 30 and im.height > 20
    unseen = set(world["classes"]["unseen_things"]) | set(world["classes"]["unseen_stuff"])
    names = {c["id"]: c["name"] for c in gt["categories"]}
    for ann in gt["annotations"][:4]:
        in_truth = sorted({names[s["category_id"]] for s in ann["segments_info"]} & unseen)
        listed = ", ".join(in_truth) or "none"
        assert f"unseen classes in the truth: {listed}; predicted: {listed}" in text
    assert any(gt_ann for gt_ann in gt["annotations"][:4]
               if {names[s["category_id"]] for s in gt_ann["segments_info"]} & unseen), "no unseen class shown"
    assert UNSEEN_MARK.strip() in text and "50.0" in text and "15.0" in text
    # a second call replaces the pictures, it does not pile them up
    write_page(out, synthetic_world, _summary(), count=2)
    assert len(list((out / "page").glob("ade20k_*.png"))) == 2
