"""The demo's page: every picture it names exists and decodes, and the grid says what truth and prediction hold."""

from __future__ import annotations

import json
from html.parser import HTMLParser

from PIL import Image

from pipelines.demo.page import UNSEEN_MARK, write_page
from tests.pipelines.demo.conftest import page_summary


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])
        assert tag not in ("script", "link", "iframe"), tag  # nothing runs or is fetched


def test_page_pictures_load_and_the_grid_reports_unseen_classes(synthetic_world, demo_out):
    out = demo_out
    world = json.loads((synthetic_world / "world.json").read_text())
    gt = json.loads((synthetic_world / world["paths"]["ade20k_panoptic"]["val_json"]).read_text())
    page = write_page(out, synthetic_world, page_summary(), count=4)
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
    write_page(out, synthetic_world, page_summary(), count=2)
    assert len(list((out / "page").glob("ade20k_*.png"))) == 2
