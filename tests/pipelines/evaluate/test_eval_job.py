"""End to end: the evaluation job over Ray Data on the synthetic world and the real COCO sample.

Prediction files are checked on their own terms (PNG ids against JSON segments; results JSON
loaded by lvis-api and pycocotools), and the scorers' outputs must be valid metrics.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.evaluate.config import EvalJobConfig
from pipelines.evaluate.data import vocabulary_sha256
from pipelines.evaluate.job import EvalJobError, run_evaluation, summary_lines
from vloss.data.masks import decode_rle, mask_to_bbox, rgb2id

pytestmark = pytest.mark.slow

TEMPLATES = ["a photo of a {}."]


def _in_unit(v) -> bool:
    return v is None or 0.0 <= float(v) <= 1.0


def _check_panoptic_files(pred_json: Path, png_dir: Path, gt_json: Path) -> int:
    """Every annotation's PNG ids equal its segments; areas/boxes recomputed from the PNG."""
    pred = json.loads(pred_json.read_text())
    gt = json.loads(gt_json.read_text())
    cats = {c["id"]: c for c in gt["categories"]}
    sizes = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
    assert [a["image_id"] for a in pred["annotations"]] == [im["id"] for im in gt["images"]]
    n = 0
    for ann in pred["annotations"]:
        with Image.open(png_dir / ann["file_name"]) as p:
            assert p.mode == "RGB"
            ids = rgb2id(np.asarray(p))  # [H, W]
        assert ids.shape == sizes[ann["image_id"]]
        assert sorted(int(v) for v in np.unique(ids) if v) == sorted(s["id"] for s in ann["segments_info"])
        for s in ann["segments_info"]:
            mask = ids == s["id"]
            assert s["area"] == int(mask.sum()) and s["bbox"] == mask_to_bbox(mask)
            assert s["category_id"] in cats and s["isthing"] == cats[s["category_id"]]["isthing"]
            n += 1
    return n


def test_ade20k_panoptic_job_with_missing_image(ray_session, synthetic_world: Path, tiny_checkpoint_dir: Path,
                                                tmp_path: Path):
    """Trainer checkpoint dir -> ADE20K-style set (string ids, category ids from 0) with one image
    missing: counted, reported, given an empty prediction; PQ computed over all images."""
    ade = tmp_path / "data" / "ade20k_panoptic"
    shutil.copytree(synthetic_world / "ade20k_panoptic", ade)
    gt = json.loads((ade / "ade20k_panoptic_val.json").read_text())
    missing = gt["images"][1]
    (ade / "images" / "validation" / missing["file_name"]).unlink()

    out = tmp_path / "out"
    cfg = EvalJobConfig(task="ade20k_panoptic", checkpoint=str(tiny_checkpoint_dir), out=str(out),
                        data=str(tmp_path / "data"), limit=3, size=64, overlays=2, pq_workers=1,
                        object_mask_threshold=0.0, overlap_threshold=0.0)
    result = run_evaluation(cfg)
    m = result["manifest"]

    # open vocabulary: exactly the ADE set's own category names, as embedded by the predictor
    assert m["vocabulary"]["names"] == [c["name"] for c in gt["categories"]]
    assert m["vocabulary"]["category_ids"][0] == 0
    assert m["vocabulary"]["predictor_sha256"] == [vocabulary_sha256(m["vocabulary"]["names"], TEMPLATES)]

    c = m["counts"]
    assert (c["images_evaluated"], c["images_predicted"], c["images_failed"]) == (3, 2, 1)
    assert c["empty_predictions_written"] == 1
    assert m["failed"][0]["image_id"] == missing["id"] and missing["file_name"] in m["failed"][0]["reason"]

    pred_root = out / "predictions"
    scored_gt = Path(m["scored_gt_json"])
    assert m["limited"] and [im["id"] for im in json.loads(scored_gt.read_text())["images"]] == \
        [im["id"] for im in gt["images"][:3]]
    assert _check_panoptic_files(pred_root / "panoptic.json", pred_root / "panoptic", scored_gt) > 0
    empty = next(a for a in json.loads((pred_root / "panoptic.json").read_text())["annotations"]
                 if a["image_id"] == missing["id"])
    assert empty["segments_info"] == []

    metrics = result["metrics"]
    for group in ("All", "Things", "Stuff"):
        assert _in_unit(metrics[group]["pq"]) and metrics[group]["n"] > 0
    # scored in memory while predicting; the written files, scored afterwards, give the same numbers
    assert m["scoring"] == {"from": "memory", "seconds_after_inference": m["scoring"]["seconds_after_inference"],
                            "crowd_rule": "official"}
    from vloss.eval.pq import pq_compute

    from_files = pq_compute(scored_gt, ade / "ade20k_panoptic_val", pred_root / "panoptic.json",
                            pred_root / "panoptic", workers=1)
    assert set(from_files["per_class"]) == set(metrics["per_class"])
    for name, v in from_files["per_class"].items():
        assert metrics["per_class"][name] == pytest.approx(v, abs=1e-12), name
    for group in ("All", "Things", "Stuff"):
        assert metrics[group] == pytest.approx(from_files[group], abs=1e-12)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["task"] == "ade20k_panoptic" and saved["metrics"]["All"] == metrics["All"]
    assert saved["checkpoint"]["sha256"] and saved["config"]["checkpoint"]["model"]["decoder"]["num_queries"] == 20
    report = (out / "report.md").read_text()
    assert "VLOSS (this run)" in report and "15.371" in report  # beside the paper's Table 1
    assert "1 image(s) could not be predicted" in report and missing["id"] in report
    assert len(result["overlays"]) == 2
    for p in result["overlays"]:
        with Image.open(p) as im:
            assert im.mode == "RGB"
    assert "1 failed (empty predictions written for them)" in summary_lines(result)


def test_lvis_job_results_load_in_both_apis(ray_session, synthetic_world: Path, tiny_weights_file: Path,
                                            tmp_path: Path):
    """Weights file + stored tiny config -> LVIS results JSON that lvis-api and pycocotools load."""
    from lvis import LVIS, LVISResults
    from pycocotools.coco import COCO

    out = tmp_path / "out"
    cfg = EvalJobConfig(task="lvis", checkpoint=str(tiny_weights_file), out=str(out), data=str(synthetic_world),
                        limit=2, size=64, overlays=1, batch_size=2)
    result = run_evaluation(cfg)
    m = result["manifest"]
    raw = json.loads((synthetic_world / "lvis" / "lvis_v1_val.json").read_text())
    assert m["vocabulary"]["names"] == [c["name"].replace("_", " ") for c in raw["categories"]]
    assert m["vocabulary"]["predictor_sha256"] == [vocabulary_sha256(m["vocabulary"]["names"], TEMPLATES)]
    assert m["input"]["size"] == 64 and m["counts"]["images_failed"] == 0

    results_path = out / "predictions" / "results.json"
    results = json.loads(results_path.read_text())
    sizes = {im["id"]: [im["height"], im["width"]] for im in raw["images"]}
    per_image: dict = {}
    for r in results:
        per_image[r["image_id"]] = per_image.get(r["image_id"], 0) + 1
        assert r["segmentation"]["size"] == sizes[r["image_id"]]
    assert per_image == {im["id"]: 300 for im in raw["images"][:2]}  # the LVIS cap, 20 queries x 72 classes
    assert decode_rle(results[0]["segmentation"]).shape == tuple(sizes[results[0]["image_id"]])

    scored = Path(m["scored_gt_json"])
    with contextlib.redirect_stdout(io.StringIO()):
        lv = LVISResults(LVIS(str(scored)), str(results_path), max_dets=300)
        coco_gt = COCO(str(scored))
        coco_dt = coco_gt.loadRes(str(results_path))
    assert len(lv.dataset["annotations"]) == len(results) == len(coco_dt.anns)

    metrics = result["metrics"]
    for key in ("AP", "AP50", "AP75", "APr", "APc", "APf"):
        assert _in_unit(metrics[key])
    assert metrics["results"]["num_kept"] == len(results)
    assert json.loads((out / "metrics.json").read_text())["task"] == "lvis"
    assert "10.2" in (out / "report.md").read_text()  # the paper's Table 2 VLOSS row
    assert len(list((out / "overlays").glob("*.png"))) == 1


def test_cli_coco_panoptic_on_the_real_sample(ray_session, shared_data: Path, tiny_weights_file: Path,
                                              tmp_path: Path, capsys):
    """jobs/evaluate.py with explicit --gt-json/--images/--gt-dir on the two real COCO images."""
    from jobs.evaluate import main

    root = shared_data / "coco-panoptic-sample"
    out = tmp_path / "out"
    rc = main(["--task", "coco_panoptic", "--checkpoint", str(tiny_weights_file), "--config", "tiny",
               "--gt-json", str(root / "panoptic_examples.json"), "--images", str(root / "input_images"),
               "--gt-dir", str(root / "panoptic_examples"), "--out", str(out), "--set", "size=96",
               "--set", "overlays=1", "--set", "pq_workers=1"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "coco_panoptic: 2/2 images predicted, 0 failed" in printed
    assert "| **VLOSS (this run)** |" in printed
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["task"] == "coco_panoptic"
    assert all(_in_unit(saved["metrics"][g]["pq"]) for g in ("All", "Things", "Stuff"))
    m = json.loads((out / "predictions" / "manifest.json").read_text())
    assert not m["limited"] and len(m["vocabulary"]["names"]) == 133
    _check_panoptic_files(out / "predictions" / "panoptic.json", out / "predictions" / "panoptic",
                          root / "panoptic_examples.json")


def test_a_failed_rerun_leaves_the_previous_complete_results(ray_session, synthetic_world: Path,
                                                              tiny_weights_file: Path, tmp_path: Path):
    """Defect 7 of issue #15: a failed re-run left the previous metrics.json and report.md beside a
    1-byte results file. Outputs are staged and moved into place only when complete."""
    out = tmp_path / "out"
    cfg = dict(task="lvis", checkpoint=str(tiny_weights_file), out=str(out), data=str(synthetic_world), limit=2,
               size=64, overlays=0, batch_size=2)
    run_evaluation(EvalJobConfig(**cfg))
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert json.loads((out / "predictions" / "results.json").read_text())  # a real results file
    empty = tmp_path / "no_images"
    empty.mkdir()
    with pytest.raises(EvalJobError, match="none of the 2 images could be predicted"):
        run_evaluation(EvalJobConfig(**{**cfg, "data": None, "images": str(empty),
                                        "gt_json": str(synthetic_world / "lvis" / "lvis_v1_val.json")}))
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no staging left behind
