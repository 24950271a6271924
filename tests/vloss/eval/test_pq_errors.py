"""Malformed panoptic input: each case names the file, the image / segment and the field."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from vloss.data.errors import DataFormatError
from vloss.data.masks import id2rgb
from vloss.eval.pq import pq_compute
from vloss.eval.pq_synthetic import write_synthetic_dataset


@pytest.fixture()
def dataset(tmp_path):
    return write_synthetic_dataset(tmp_path, num_images=3, height=16, width=20, seed=3)


def _edit_pred(paths, fn):
    pred = json.loads(paths["pred_json"].read_text())
    fn(pred)
    paths["pred_json"].write_text(json.dumps(pred))


def _run(paths, workers=1):
    return pq_compute(paths["gt_json"], paths["gt_dir"], paths["pred_json"], paths["pred_dir"], workers=workers)


def test_png_segment_missing_from_json(dataset):
    removed = {}

    def drop(pred):
        removed["id"] = pred["annotations"][1]["segments_info"].pop(0)["id"]
    _edit_pred(dataset, drop)
    with pytest.raises(DataFormatError) as e:
        _run(dataset)
    msg = str(e.value)
    assert "000001.png" in msg and "image_id=1" in msg and f"segment_id={removed['id']}" in msg
    assert "segments_info" in msg and "in the PNG but not in the JSON" in msg


def test_json_segment_missing_from_png(dataset):
    _edit_pred(dataset, lambda p: p["annotations"][0]["segments_info"].append({"id": 4242, "category_id": 1}))
    with pytest.raises(DataFormatError) as e:
        _run(dataset)
    msg = str(e.value)
    assert str(dataset["pred_json"]) in msg and "image_id=0" in msg and "segment_id=4242" in msg
    assert "no pixels in the PNG" in msg


def test_unknown_category(dataset):
    def bad(pred):
        seg = pred["annotations"][2]["segments_info"][0]
        seg["category_id"] = 999
    _edit_pred(dataset, bad)
    with pytest.raises(DataFormatError) as e:
        _run(dataset)
    msg = str(e.value)
    assert str(dataset["pred_json"]) in msg and "image_id=2" in msg and "field 'category_id'" in msg
    assert "999" in msg


def test_missing_prediction_for_ground_truth_image(dataset):
    _edit_pred(dataset, lambda p: p["annotations"].pop(1))
    with pytest.raises(DataFormatError) as e:
        _run(dataset)
    assert str(dataset["pred_json"]) in str(e.value) and "image_id=1" in str(e.value)
    assert "no prediction" in str(e.value)


def test_png_size_mismatch_raised_from_a_worker_process(dataset):
    # the error crosses the process pool intact (path, record, field)
    Image.fromarray(id2rgb(np.zeros((16, 21), dtype=np.int64))).save(dataset["pred_dir"] / "000002.png")
    with pytest.raises(DataFormatError) as e:
        _run(dataset, workers=2)
    msg = str(e.value)
    assert "000002.png" in msg and "image_id=2" in msg and "(21, 16)" in msg and "(20, 16)" in msg
    assert e.value.field == "file_name" and e.value.record == "image_id=2"


def test_missing_png_file(dataset):
    (dataset["pred_dir"] / "000000.png").unlink()
    with pytest.raises(DataFormatError, match=r"000000.png \[image_id=0\] field 'file_name': panoptic PNG not found"):
        _run(dataset)


def test_cli_prints_json_and_writes_out(dataset, tmp_path):
    out = tmp_path / "m" / "metrics.json"
    cmd = [sys.executable, "-m", "vloss.eval", "pq", "--gt-json", str(dataset["gt_json"]),
           "--gt-dir", str(dataset["gt_dir"]), "--pred-json", str(dataset["pred_json"]),
           "--pred-dir", str(dataset["pred_dir"]), "--workers", "1", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    assert printed == json.loads(out.read_text())
    assert printed == _run(dataset)
    assert set(printed) == {"All", "Things", "Stuff", "per_class"}
    for group in ("All", "Things", "Stuff"):
        assert set(printed[group]) == {"pq", "sq", "rq", "n"}
        assert all(0.0 <= printed[group][k] <= 1.0 for k in ("pq", "sq", "rq"))
    for c in printed["per_class"].values():
        assert set(c) == {"pq", "sq", "rq", "tp", "fp", "fn"}


def test_cli_reports_malformed_input(dataset):
    _edit_pred(dataset, lambda p: p["annotations"].pop(0))
    cmd = [sys.executable, "-m", "vloss.eval", "pq", "--gt-json", str(dataset["gt_json"]),
           "--gt-dir", str(dataset["gt_dir"]), "--pred-json", str(dataset["pred_json"]),
           "--pred-dir", str(dataset["pred_dir"]), "--workers", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "image_id=0" in proc.stderr and "no prediction" in proc.stderr and proc.stdout == ""


def _cli(argv, capsys) -> tuple[int, str]:
    from vloss.eval.__main__ import main

    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse usage errors
        rc = exc.code
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("case", ["max_dets_zero_lvis", "max_dets_zero_coco", "workers_zero", "truncated_gt",
                                  "garbage_png", "missing_gt", "not_a_number"])
def test_scorer_clis_answer_bad_input_with_one_line_and_status_2(case, shared_data, tmp_path, capsys):
    """Defect 10 of issue #15: --max-dets 0, a truncated ground-truth JSON and a garbage PNG printed
    tracebacks."""
    d = shared_data / "coco-panoptic-sample"
    gt, gt_dir = d / "panoptic_examples.json", d / "panoptic_examples"
    lvis = shared_data / "lvis-v0.5-val-100" / "lvis_val_100.json"
    truncated = tmp_path / "truncated.json"
    truncated.write_text(gt.read_text()[:500])
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    for p in gt_dir.glob("*.png"):
        (garbage / p.name).write_bytes(b"junk")
    argv = {
        "max_dets_zero_lvis": ["lvis", "--gt-json", str(lvis), "--results", str(gt), "--max-dets", "0"],
        "max_dets_zero_coco": ["coco", "--gt-json", str(gt), "--results", str(gt), "--max-dets", "0"],
        "workers_zero": ["pq", "--gt-json", str(gt), "--gt-dir", str(gt_dir), "--pred-json", str(gt),
                         "--pred-dir", str(gt_dir), "--workers", "0"],
        "truncated_gt": ["pq", "--gt-json", str(truncated), "--gt-dir", str(gt_dir), "--pred-json", str(gt),
                         "--pred-dir", str(gt_dir)],
        "garbage_png": ["pq", "--gt-json", str(gt), "--gt-dir", str(gt_dir), "--pred-json", str(gt),
                        "--pred-dir", str(garbage)],
        "missing_gt": ["lvis", "--gt-json", str(tmp_path / "none.json"), "--results", str(gt)],
        "not_a_number": ["coco", "--gt-json", str(gt), "--results", str(gt), "--max-dets", "ten"],
    }[case]
    rc, err = _cli(argv, capsys)
    assert rc == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "error" in lines[0] and "Traceback" not in err, err
