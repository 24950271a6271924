"""PNG reading and the in-memory scoring API (pq_stats_many)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from vloss.data.errors import DataFormatError
from vloss.data.masks import id2rgb
from vloss.eval.pq import load_panoptic_pairs, pq_compute, pq_stats_many
from vloss.eval.pq_png import read_panoptic_png
from vloss.eval.pq_stats import PQStat, pq_stats_single
from vloss.eval.pq_synthetic import SYNTHETIC_CATEGORIES, random_panoptic_pair, write_synthetic_dataset


def ids_by_pil(path) -> np.ndarray:
    """Independent decoding: Pillow's RGB array and the id formula in int64."""
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


@pytest.fixture()
def id_map():
    rng = np.random.default_rng(11)
    ids = rng.integers(0, 256 ** 3, size=(23, 31))
    ids[:5] = 0
    ids[5:9] = 256 ** 3 - 1
    return ids


@pytest.mark.parametrize("arrow", [True, False])
def test_read_panoptic_png_rgb_and_rgba(tmp_path, id_map, arrow, monkeypatch):
    if not arrow:  # the copy path, taken when Pillow cannot export its buffer to Arrow
        monkeypatch.delattr(Image.Image, "__arrow_c_array__", raising=False)
    rgb = tmp_path / "rgb.png"
    Image.fromarray(id2rgb(id_map)).save(rgb)
    rgba = tmp_path / "rgba.png"
    alpha = (np.arange(id_map.size).reshape(id_map.shape) % 256).astype(np.uint8)
    Image.fromarray(np.dstack([id2rgb(id_map), alpha]), mode="RGBA").save(rgba)
    for path in (rgb, rgba):
        ids = read_panoptic_png(path)
        assert ids.dtype == np.uint32 and ids.shape == id_map.shape
        np.testing.assert_array_equal(ids, ids_by_pil(path))
        np.testing.assert_array_equal(ids, id_map)


def test_unreadable_png_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(DataFormatError, match=r"bad.png \[image_id=7\] field 'file_name': not a readable PNG"):
        read_panoptic_png(bad, image_id=7)
    gray = tmp_path / "gray.png"
    Image.fromarray(np.zeros((3, 3), dtype=np.uint8)).save(gray)
    with pytest.raises(DataFormatError, match="must be RGB, got mode L"):
        read_panoptic_png(gray)


def _cases(n: int, seed: int) -> list[tuple]:
    rng = np.random.default_rng(seed)
    return [random_panoptic_pair(rng, int(rng.integers(5, 30)), int(rng.integers(5, 30))) for _ in range(n)]


def test_many_arrays_equal_the_sum_of_single_images():
    cases = _cases(40, 3)
    expected = PQStat.empty(SYNTHETIC_CATEGORIES)
    for case in cases:
        expected += pq_stats_single(*case, SYNTHETIC_CATEGORIES)
    gt, gs, pred, ps = (list(x) for x in zip(*cases))
    for workers in (1, 2, 3):
        got = pq_stats_many(gt, gs, pred, ps, SYNTHETIC_CATEGORIES, workers=workers)
        for name in ("tp", "fp", "fn", "iou"):  # merged in image order: identical bits
            np.testing.assert_array_equal(getattr(got, name), getattr(expected, name))
    assert expected.tp.sum() > 20 and expected.fp.sum() > 20


def test_many_mixes_png_paths_and_arrays(tmp_path):
    p = write_synthetic_dataset(tmp_path, num_images=6, height=20, width=24, seed=9)
    pairs, cats = load_panoptic_pairs(p["gt_json"], p["gt_dir"], p["pred_json"], p["pred_dir"])
    from_files = pq_compute(p["gt_json"], p["gt_dir"], p["pred_json"], p["pred_dir"], workers=1)
    # ground truth read from its PNGs by the workers, predictions handed over in memory
    preds = [ids_by_pil(pair.pred_png) for pair in pairs]
    stat = pq_stats_many([pair.gt_png for pair in pairs], [pair.gt_segments for pair in pairs], preds,
                         [pair.pred_segments for pair in pairs], cats, workers=2)
    assert stat.summary(cats) == from_files


def test_many_reports_malformed_entries():
    (gt, gs, pred, ps), = _cases(1, 4)
    with pytest.raises(ValueError, match="differ in length"):
        pq_stats_many([gt], [gs], [pred, pred], [ps, ps], SYNTHETIC_CATEGORIES)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        pq_stats_many([gt], [gs], [pred], [ps], SYNTHETIC_CATEGORIES, workers=0)
    bad = [dict(s) for s in ps]
    bad[0]["category_id"] = 999
    with pytest.raises(DataFormatError) as e:
        pq_stats_many([gt, gt], [gs, gs], [pred, pred], [ps, bad], SYNTHETIC_CATEGORIES, image_ids=["a", "b"],
                      workers=2, pred_source="<model output>")
    assert str(e.value).startswith("<model output> [image_id=b, segment_id=") and "999" in str(e.value)


def test_process_executor_equals_threads_and_passes_errors_back(tmp_path):
    p = write_synthetic_dataset(tmp_path, num_images=8, height=20, width=24, seed=12)
    files = (p["gt_json"], p["gt_dir"], p["pred_json"], p["pred_dir"])
    assert pq_compute(*files, workers=2, executor="process") == pq_compute(*files, workers=2)
    with pytest.raises(ValueError, match="executor"):
        pq_compute(*files, workers=2, executor="fiber")
    # an error raised in a worker process arrives intact (path, record, field)
    Image.fromarray(id2rgb(np.zeros((20, 25), dtype=np.int64))).save(p["pred_dir"] / "000005.png")
    with pytest.raises(DataFormatError) as e:
        pq_compute(*files, workers=2, executor="process")
    assert "000005.png" in str(e.value) and e.value.record == "image_id=5" and e.value.field == "file_name"


def test_ground_truth_areas_come_from_the_pixels_not_the_json_area_field(tmp_path):
    # The COCO panoptic API reads ground-truth areas from "area"; this scorer counts pixels
    # (the two agree whenever "area" is the pixel count, as in COCO and synthetic files).
    p = write_synthetic_dataset(tmp_path, num_images=5, height=20, width=24, seed=13)
    files = (p["gt_json"], p["gt_dir"], p["pred_json"], p["pred_dir"])
    before = pq_compute(*files, workers=1)
    gt = json.loads(p["gt_json"].read_text())
    pairs, _ = load_panoptic_pairs(*files)
    for ann, pair in zip(gt["annotations"], pairs):
        counts = dict(zip(*np.unique(ids_by_pil(pair.gt_png), return_counts=True)))
        assert all(s["area"] == counts[s["id"]] for s in ann["segments_info"])  # written as pixel counts
        for s in ann["segments_info"]:
            s["area"] = 3 * s["area"] + 1
    p["gt_json"].write_text(json.dumps(gt))
    assert pq_compute(*files, workers=1) == before
