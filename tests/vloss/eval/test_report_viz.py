"""Reports beside the paper's tables, and overlay images."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest
from PIL import Image

from vloss.data.masks import rgb2id
from vloss.eval.report import checkpoint_sha256, write_report
from vloss.viz import color_for_id, draw_instance_overlay, draw_panoptic_overlay

PQ_METRICS = {"All": {"pq": 0.12345, "sq": 0.7, "rq": 0.2, "n": 10},
              "Things": {"pq": 0.1, "sq": 0.6, "rq": 0.15, "n": 6},
              "Stuff": {"pq": 0.15, "sq": 0.8, "rq": 0.25, "n": 4}, "per_class": {}}


def _table_rows(md: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in md.splitlines() if line.startswith("| ") and "---" not in line]


@pytest.fixture()
def sample(shared_data):
    d = shared_data / "coco-panoptic-sample"
    gt = json.loads((d / "panoptic_examples.json").read_text())
    ann = gt["annotations"][1]
    image = np.asarray(Image.open(d / "input_images" / ann["file_name"].replace(".png", ".jpg")).convert("RGB"))
    ids = rgb2id(np.asarray(Image.open(d / "panoptic_examples" / ann["file_name"]).convert("RGB")))
    names = {c["id"]: c["name"] for c in gt["categories"]}
    return image, ids, ann["segments_info"], names


def test_panoptic_report_has_published_rows_and_ours(tmp_path, sample):
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(np.random.default_rng(0).bytes(3000))
    image, ids, segs, names = sample
    overlay = tmp_path / "out" / "overlays" / "img.png"
    overlay.parent.mkdir(parents=True)
    draw_panoptic_overlay(image, ids, segs, names).save(overlay)
    config = {"model": {"num_queries": 100, "decoder_layers": 9}, "seed": 3}
    report = write_report(tmp_path / "out", "ade20k_panoptic", PQ_METRICS, config, ckpt, 156_690_000, [overlay])
    md = report.read_text()
    rows = _table_rows(md)
    assert rows[0] == ["Method", "Visual Enc", "Text Enc", "Params", "Proposal", "PQ^all", "PQ^th", "PQ^st"]
    assert ["VLOSS (published)", "Swin-T", "CLIP Text", "156.69M", "-", "15.371", "13.959", "18.195"] in rows
    assert ["MaskCLIP (published)", "CLIP ViT-L", "CLIP Text", "472.03M", "✓", "15.121", "13.536", "18.290"] in rows
    assert sum("(published)" in r[0] for r in rows) == 5
    assert rows[-1] == ["**VLOSS (this run)**", "Swin-T", "CLIP Text", "156.69M", "-", "12.345", "10.000", "15.000"]
    assert hashlib.sha256(ckpt.read_bytes()).hexdigest() in md
    assert "](overlays/img.png)" in md and '"num_queries": 100' in md
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["metrics"] == PQ_METRICS and saved["config"] == config and saved["params"] == 156_690_000
    assert saved["checkpoint"]["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()


def test_lvis_report_and_undefined_values(tmp_path):
    metrics = {"AP": 0.1, "AP50": 0.2, "AP75": 0.05, "APs": None, "APm": 0.1, "APl": 0.3,
               "APr": None, "APc": 0.08, "APf": 0.15}
    md = write_report(tmp_path, "lvis", metrics, {}, None, 1_234_567, []).read_text()
    rows = _table_rows(md)
    assert rows[0][5:] == ["AP", "AP50", "AP75", "APr", "APc", "APf"]
    assert ["CLIP baseline (published)", "CLIP ViT-L", "CLIP Text", "472.39M", "✓", "5.0", "7.2", "5.2",
            "-", "-", "-"] in rows
    assert ["VLOSS (published)", "Swin-T", "CLIP Text", "156.69M", "-", "10.2", "15.8", "10.6", "4.4", "8.1",
            "15.0"] in rows
    assert rows[-1][3:] == ["1.23M", "-", "10.0", "20.0", "5.0", "-", "8.0", "15.0"]
    md = write_report(tmp_path / "m", "lvis_minival", metrics, {}, None, None, []).read_text()
    assert ["VLOSS (published)", "Swin-T", "CLIP Text", "156.69M", "-", "13.8", "20.7", "14.7", "8.1", "12.3",
            "16.2"] in _table_rows(md)
    with pytest.raises(ValueError, match="unknown report task"):
        write_report(tmp_path, "ade20k", metrics, {}, None, None, [])


def test_directory_checkpoint_hash_tracks_content(tmp_path):
    d = tmp_path / "ckpt"
    d.mkdir()
    (d / "model.pt").write_bytes(b"abc")
    (d / "extra.json").write_text("{}")
    h1 = checkpoint_sha256(d)
    assert re.fullmatch(r"[0-9a-f]{64}", h1) and checkpoint_sha256(d) == h1
    (d / "model.pt").write_bytes(b"abd")
    assert checkpoint_sha256(d) != h1


def test_panoptic_overlay_size_and_changes_only_segments(tmp_path, sample):
    image, ids, segs, names = sample
    out = draw_panoptic_overlay(image, ids, segs, names)
    path = tmp_path / "o.png"
    out.save(path)
    arr = np.asarray(Image.open(path).convert("RGB"))
    assert arr.shape == image.shape
    changed = np.any(arr != image, axis=2)  # [H, W]
    void = ids == 0
    assert changed[~void].mean() > 0.95  # segment pixels are tinted
    # VOID pixels change only at boundaries or under a name label
    plain = draw_panoptic_overlay(image, ids, segs, names, draw_names=False)
    plain_changed = np.any(np.asarray(plain) != image, axis=2)
    edge = np.zeros_like(void)
    edge[:, 1:] |= ids[:, 1:] != ids[:, :-1]
    edge[:, :-1] |= ids[:, 1:] != ids[:, :-1]
    edge[1:] |= ids[1:] != ids[:-1]
    edge[:-1] |= ids[1:] != ids[:-1]
    assert not np.any(plain_changed & void & ~edge)
    # deterministic, and names add text
    assert np.array_equal(np.asarray(draw_panoptic_overlay(image, ids, segs, names)), arr)
    assert np.any(np.asarray(plain) != arr)


def test_instance_overlay(sample):
    image, ids, segs, names = sample
    masks = np.stack([ids == s["id"] for s in segs[:4]])  # [4, H, W]
    out = np.asarray(draw_instance_overlay(image, masks, [s["category_id"] for s in segs[:4]],
                                           [0.9, 0.8, 0.7, 0.6], names))
    assert out.shape == image.shape
    changed = np.any(out != image, axis=2)
    assert changed[masks.any(0)].mean() > 0.95
    plain = np.asarray(draw_instance_overlay(image, masks, [1] * 4, None, names, draw_names=False))
    assert not np.any(np.any(plain != image, axis=2) & ~masks.any(0))
    assert len({color_for_id(i) for i in range(1, 50)}) == 49


def test_synthetic_world_report_keeps_published_rows_apart(tmp_path):
    from vloss.eval.report import write_report

    metrics = {"All": {"pq": 0.41}, "Things": {"pq": 0.30}, "Stuff": {"pq": 0.62}}
    md = write_report(tmp_path, "ade20k_panoptic", metrics, {}, None, 4_960_000, [], synthetic=True).read_text()
    assert md.splitlines()[0].startswith("# VLOSS evaluation on the synthetic world")
    results, published = md.split("### Published, real data, not comparable")
    assert "VLOSS (this run)" in results and "(published)" not in results and "41.000" in results
    assert "15.371" in published and "VLOSS (this run)" not in published
    real = write_report(tmp_path / "real", "ade20k_panoptic", metrics, {}, None, 4_960_000, []).read_text()
    assert "not comparable" not in real and "15.371" in real
