"""The Python API for using a model: vocabularies, inputs, the three tasks, caching, drawing.

References are independent of the code under test: masks are re-derived from the id images
pixel by pixel, boxes by brute force, RLEs are decoded with pycocotools, and a reordered
vocabulary must give the same segments (class scores do not depend on the order of the names).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vloss.data.masks import rgb2id
from vloss.inference.predictor import Predictor, PredictorSettings, Vocabulary

COCO_IMAGES = "coco-panoptic-sample/input_images"


def _bbox(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def _images(shared_data: Path) -> list[Path]:
    return sorted((shared_data / COCO_IMAGES).glob("*.jpg"))


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint_dir: Path) -> Predictor:
    # a random network scores every class low: keep every query so that there is something to check
    return Predictor.from_checkpoint(tiny_checkpoint_dir, threshold=0.0, overlap_threshold=0.0)


# ---- vocabularies ---------------------------------------------------------------------------


def test_vocabulary_text_file_with_prefixes_comments_and_blank_lines(tmp_path: Path):
    f = tmp_path / "vocab.txt"
    f.write_text("# my classes\nthing: red car\n\nstuff: sky\ndog\nStuff:  road \n", encoding="utf-8")
    v = Vocabulary.from_file(f)
    assert v.names == ["red car", "dog", "sky", "road"] and v.isthing == [True, True, False, False]


def test_vocabulary_json_file_and_its_errors(tmp_path: Path):
    f = tmp_path / "vocab.json"
    f.write_text(json.dumps([{"name": "cat"}, {"name": "grass", "isthing": False}]))
    v = Vocabulary.from_file(f)
    assert v.names == ["cat", "grass"] and v.isthing == [True, False]
    f.write_text(json.dumps([{"name": "cat"}, {"label": "grass"}]))
    with pytest.raises(ValueError, match=r"vocab\.json: entry 1 must be"):
        Vocabulary.from_file(f)
    f.write_text("[{'name': 'cat'}]")
    with pytest.raises(ValueError, match=r"vocab\.json: not valid JSON"):
        Vocabulary.from_file(f)


@pytest.mark.parametrize("things, stuff, message", [
    ([], [], "the vocabulary is empty"),
    (["dog", " "], [], "empty class name"),
    (["Sky"], ["sky"], "duplicate class name 'sky'"),
    (["red  car", "red car"], [], "duplicate class name"),
])
def test_vocabulary_refuses_empty_and_duplicate_names(things, stuff, message):
    with pytest.raises(ValueError, match=message):
        Vocabulary.from_lists(things, stuff)


def test_vocabulary_file_errors_name_the_file(tmp_path: Path):
    f = tmp_path / "v.txt"
    f.write_text("dog\ndog\n")
    with pytest.raises(ValueError, match=r"v\.txt: duplicate class name 'dog'"):
        Vocabulary.from_file(f)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="task must be one of"):
        PredictorSettings(task="detection")
    with pytest.raises(ValueError, match="positive"):
        PredictorSettings(batch_size=0)


def test_no_vocabulary_is_a_clear_error(tiny_checkpoint_dir: Path, shared_data: Path):
    p = Predictor.from_checkpoint(tiny_checkpoint_dir)
    with pytest.raises(ValueError, match="call set_vocabulary"):
        p(str(_images(shared_data)[0]))


# ---- panoptic -------------------------------------------------------------------------------


def test_panoptic_segments_agree_with_the_id_image(predictor: Predictor, shared_data: Path):
    path = _images(shared_data)[0]
    predictor.set_vocabulary(things=["person", "dog", "car"], stuff=["grass", "sky", "wall"])
    pred = predictor(str(path))
    with Image.open(path) as im:
        assert (pred.height, pred.width) == (im.height, im.width)
    assert pred.segments, "threshold 0 keeps the queries of a random network"
    ids = pred.segment_ids
    assert ids.shape == (pred.height, pred.width)
    assert set(np.unique(ids).tolist()) - {0} == {s.id for s in pred.segments}  # no segment without pixels
    for k, s in enumerate(pred.segments):
        mask = ids == s.id
        assert s.area == int(mask.sum()) and s.bbox == _bbox(mask)
        assert np.array_equal(pred.mask(k), mask)
        assert s.name == predictor.vocabulary.names[s.label] and s.isthing == predictor.vocabulary.isthing[s.label]
        assert 0.0 <= s.score <= 1.0
    # the id PNG is the COCO panoptic encoding of the same ids
    with Image.open(io.BytesIO(pred.id_png())) as png:
        assert np.array_equal(rgb2id(np.asarray(png.convert("RGB"))), ids)
    info = pred.to_json()
    assert [d["name"] for d in info["segments_info"]] == [s.name for s in pred.segments]
    assert json.loads(json.dumps(info)) == info


def test_inputs_path_array_pil_and_lists_give_the_same_result(predictor: Predictor, shared_data: Path):
    paths = _images(shared_data)
    predictor.set_vocabulary(things=["person", "car"], stuff=["sky"])
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    by_path = predictor([str(p) for p in paths])
    by_array = predictor(arrays)
    by_pil = predictor(Image.open(paths[1]))
    assert by_path[0].source == str(paths[0]) and by_array[0].source == "<array>"
    for a, b in zip(by_path, by_array):
        assert np.array_equal(a.segment_ids, b.segment_ids) and a.segments == b.segments
    assert np.array_equal(by_pil.segment_ids, by_path[1].segment_ids)
    with pytest.raises(ValueError, match=r"expected an \[H, W, 3\] uint8 RGB array"):
        predictor(np.zeros((10, 10), np.uint8))
    with pytest.raises(FileNotFoundError):
        predictor(str(paths[0]) + ".missing.jpg")


def test_a_reordered_vocabulary_gives_the_same_segments(predictor: Predictor, shared_data: Path):
    path = str(_images(shared_data)[1])
    things, stuff = ["person", "bicycle", "car", "dog"], ["sky", "road", "tree"]
    a = predictor.set_vocabulary(things=things, stuff=stuff)(path)
    b = predictor.set_vocabulary(things=things[::-1], stuff=stuff[::-1])(path)
    key = lambda p: sorted((s.name, s.area, round(s.score, 4)) for s in p.segments)  # noqa: E731
    assert key(a) == key(b)
    # the same pixels carry the same class name
    def names_at(p):
        out = np.full(p.segment_ids.shape, "", dtype=object)
        for k, s in enumerate(p.segments):
            out[p.mask(k)] = s.name
        return out

    assert np.array_equal(names_at(a), names_at(b))


def test_class_embeddings_are_computed_once_per_vocabulary(tiny_checkpoint_dir: Path, shared_data: Path):
    p = Predictor.from_checkpoint(tiny_checkpoint_dir)
    calls = []
    hook = p.model.text.tower.transformer.register_forward_hook(lambda *a: calls.append(1))
    try:
        p.set_vocabulary(things=["dog"], stuff=["sky"])
        first = len(calls)
        assert first > 0
        p(str(_images(shared_data)[0]))
        p.set_vocabulary(things=["dog"], stuff=["sky"])  # the same vocabulary again: cached
        assert len(calls) == first
        p.set_vocabulary(things=["cat"], stuff=["sky"])  # a new one: embedded
        assert len(calls) > first
        assert p.class_embeddings.shape == (2, p.model.cfg.text.embed_dim)
    finally:
        hook.remove()


def test_weights_file_and_checkpoint_directory_predict_alike(tiny_checkpoint_dir: Path, tiny_weights_file: Path,
                                                             shared_data: Path):
    path = str(_images(shared_data)[0])
    a = Predictor.from_checkpoint(tiny_checkpoint_dir, threshold=0.0).set_vocabulary(things=["cat"], stuff=["sky"])
    b = Predictor.from_checkpoint(tiny_weights_file, threshold=0.0).set_vocabulary(things=["cat"], stuff=["sky"])
    pa, pb = a(path), b(path)
    assert np.array_equal(pa.segment_ids, pb.segment_ids) and pa.segments == pb.segments
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        Predictor.from_checkpoint(tiny_weights_file.parent / "nope.pt")


# ---- instance and semantic ------------------------------------------------------------------


def test_instance_detections_are_sorted_rles_of_their_masks(tiny_checkpoint_dir: Path, shared_data: Path):
    from pycocotools import mask as mask_utils

    p = Predictor.from_checkpoint(tiny_checkpoint_dir, task="instance", topk=7)
    p.set_vocabulary(things=["person", "car"], stuff=["sky"])
    pred = p(str(_images(shared_data)[0]))
    assert pred.masks.shape == (len(pred.segments), pred.height, pred.width) and pred.masks.dtype == bool
    assert 0 < len(pred.segments) <= 7
    assert all(s.isthing for s in pred.segments)  # stuff classes are not detected
    assert {s.name for s in pred.segments} <= {"person", "car"}
    scores = [s.score for s in pred.segments]
    assert scores == sorted(scores, reverse=True)
    dets = pred.to_json()["detections"]
    for k, d in enumerate(dets):
        rle = {"size": d["segmentation"]["size"], "counts": d["segmentation"]["counts"].encode()}
        assert np.array_equal(mask_utils.decode(rle).astype(bool), pred.masks[k])
        assert int(mask_utils.area(rle)) == d["area"] == int(pred.masks[k].sum())
        if d["area"]:
            assert d["bbox"] == _bbox(pred.masks[k])
    # a score threshold keeps the detections above it
    p.settings.threshold = scores[len(scores) // 2]
    kept = p(str(_images(shared_data)[0]))
    assert [s.score for s in kept.segments] == [s for s in scores if s >= p.settings.threshold]


def test_semantic_labels_cover_the_image(tiny_checkpoint_dir: Path, shared_data: Path):
    import torch

    from vloss.inference.postprocess import semantic_inference

    p = Predictor.from_checkpoint(tiny_checkpoint_dir, task="semantic")
    p.set_vocabulary(things=["person"], stuff=["sky", "grass"])
    pred = p(str(_images(shared_data)[1]))
    labels = pred.segment_ids
    assert labels.min() >= 1 and labels.max() <= 3
    assert sum(s.area for s in pred.segments) == pred.height * pred.width
    for s in pred.segments:
        assert s.area == int((labels == s.id).sum()) and s.id == s.label + 1
    # a 16-bit PNG of the labels
    with Image.open(io.BytesIO(pred.id_png())) as png:
        assert np.array_equal(np.asarray(png).astype(np.int32), labels)
    # the label is the arg-max of Mask2Former's semantic scores (sum over queries of class prob x mask prob)
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.0], [0.0, 3.0, 0.0, 0.0]])  # [Q=2, C+1]
    masks = torch.tensor([[[5.0, -5.0]], [[-5.0, 5.0]]])  # [Q, 1, 2]
    sem = semantic_inference(logits, masks)  # [C, 1, 2]
    assert sem.argmax(0).tolist() == [[0, 1]]


def test_draw_returns_an_overlay_of_the_image(predictor: Predictor, shared_data: Path):
    path = _images(shared_data)[0]
    predictor.set_vocabulary(things=["person", "car"], stuff=["sky"])
    pred = predictor(str(path))
    overlay = pred.draw(str(path))
    original = np.asarray(Image.open(path).convert("RGB"))
    assert overlay.size == (pred.width, pred.height)
    changed = np.any(np.asarray(overlay.convert("RGB")) != original, axis=-1)
    assert changed.mean() > 0.2  # segments are tinted
