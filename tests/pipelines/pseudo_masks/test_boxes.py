"""Input validation of the pseudo-mask job: errors name file/record/field, clipping is counted."""

from __future__ import annotations

import json

import pytest

from pipelines.common import ray_env
from pipelines.common.storage import locate, read_json
from pipelines.pseudo_masks.config import PseudoMaskJobConfig
from pipelines.pseudo_masks.job import run_pseudo_masks
from tests.fixtures_teacher import load_json
from vloss.data.errors import DataFormatError
from vloss.teacher.boxes import clip_box, parse_detection_input
from vloss.teacher.config import TeacherConfig


def _doc(boxes, width=100, height=80):
    return {"images": [{"id": 7, "file_name": "a.jpg", "height": height, "width": width}],
            "categories": [{"id": 3, "name": "thing"}],
            "annotations": [{"id": 100 + i, "image_id": 7, "category_id": 3, "bbox": b}
                            for i, b in enumerate(boxes)]}


def test_real_sample_parses_with_counts(sample_source):
    data = load_json(sample_source.annotations)
    det = parse_detection_input(data, str(sample_source.annotations))
    assert det.num_images_total == len(data["images"]) == 2
    assert det.num_boxes == len(data["annotations"]) == 50
    assert [im.image_id for im in det.images] == sorted(im["id"] for im in data["images"])
    assert sum(len(im.instances) for im in det.images) == 50
    by_id = {a["id"]: a for a in data["annotations"]}
    for im in det.images:
        for b in im.instances:
            src = by_id[b.ann_id]
            assert src["image_id"] == im.image_id and src["category_id"] == b.category_id
            # the real sample's boxes are inside their images: nothing clipped
            assert list(b.bbox) == [float(v) for v in src["bbox"]] and not b.clipped
    assert det.num_clipped == 0


def test_synthetic_world_parses(synthetic_source):
    data = load_json(synthetic_source.annotations)
    det = parse_detection_input(data, "train.json")
    assert det.num_boxes == len(data["annotations"])
    assert len(det.images) == len({a["image_id"] for a in data["annotations"]})


def test_unknown_category_names_file_record_field():
    doc = _doc([[1, 1, 5, 5]])
    doc["annotations"][0]["category_id"] = 99
    with pytest.raises(DataFormatError) as err:
        parse_detection_input(doc, "boxes.json")
    msg = str(err.value)
    assert "boxes.json" in msg and "annotation id 100" in msg and "category_id" in msg and "99" in msg


@pytest.mark.parametrize("bbox", [[1, 1, 0, 5], [1, 1, 5, -2]])
def test_non_positive_box_is_an_error(bbox):
    with pytest.raises(DataFormatError, match=r"annotation id 100.*'bbox'.*non-positive"):
        parse_detection_input(_doc([bbox]), "boxes.json")


@pytest.mark.parametrize("bbox", [[100, 10, 5, 5], [-20, 10, 20, 5], [10, 80, 3, 3]])
def test_box_entirely_outside_is_an_error(bbox):
    with pytest.raises(DataFormatError, match=r"annotation id 100.*entirely outside image 7"):
        parse_detection_input(_doc([bbox]), "boxes.json")


def test_partly_outside_boxes_are_clipped_and_counted():
    boxes = [[90, 70, 20, 30], [-5, -6, 10, 10], [10, 10, 5, 5]]
    det = parse_detection_input(_doc(boxes), "boxes.json")
    assert det.num_clipped == 2
    got = {b.ann_id: (b.bbox, b.clipped) for b in det.images[0].instances}
    # intersection with [0, 100] x [0, 80], by hand
    assert got[100] == ((90.0, 70.0, 10.0, 10.0), True)
    assert got[101] == ((0.0, 0.0, 5.0, 4.0), True)
    assert got[102] == ((10.0, 10.0, 5.0, 5.0), False)
    assert clip_box((10, 10, 5, 5), 100, 80) == ((10.0, 10.0, 5.0, 5.0), False)


def test_malformed_structure_and_json(tmp_path):
    with pytest.raises(DataFormatError, match="'annotations'"):
        parse_detection_input({"images": [], "categories": []}, "x.json")
    doc = _doc([[1, 1, 5, 5]])
    doc["annotations"][0]["image_id"] = 8
    with pytest.raises(DataFormatError, match=r"annotation id 100.*'image_id'.*unknown image id 8"):
        parse_detection_input(doc, "x.json")
    bad = tmp_path / "broken.json"
    bad.write_text('{"images": [')
    with pytest.raises(DataFormatError, match="broken.json.*not valid JSON"):
        read_json(locate(bad))


def test_validation_happens_before_any_ray_work(tmp_path, monkeypatch):
    doc = _doc([[1, 1, 5, 5], [200, 10, 5, 5]])
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))

    def no_ray(*_a, **_k):
        raise AssertionError("Ray was started before the input was validated")

    monkeypatch.setattr(ray_env, "ensure_ray", no_ray)  # the actor-pool driver starts Ray through it
    cfg = PseudoMaskJobConfig(annotations=str(path), images=str(tmp_path), out=str(tmp_path / "out"),
                              teacher=TeacherConfig(backend="box"))
    with pytest.raises(DataFormatError, match=r"bad.json \[annotation id 101\] field 'bbox'"):
        run_pseudo_masks(cfg)
    assert not (tmp_path / "out").exists()
