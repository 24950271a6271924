"""Evaluation inputs without Ray: data layouts, the open vocabulary, checkpoint loading, the
decode stage and the predictor's output files checked against the real samples and formulas."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines.common.inference_decode import decode_eval_images
from pipelines.evaluate.data import EvalImage, vocabulary_sha256, write_gt_subset
from pipelines.evaluate.model import load_eval_model
from pipelines.evaluate.predictor import EvalPredictor
from pipelines.evaluate.tasks import load_eval_set, resolve_eval_paths
from vloss.data.masks import decode_rle, mask_to_bbox, rgb2id
from vloss.data.transforms import resized_shape
from vloss.model import WeightsError, save_model_weights


def _coco_sample(shared_data: Path) -> dict:
    root = shared_data / "coco-panoptic-sample"
    return {"gt_json": root / "panoptic_examples.json", "images": root / "input_images",
            "gt_dir": root / "panoptic_examples", "det_json": root / "panoptic_coco_detection_format.json"}


# ----------------------------------------------------------------------------- layouts and vocabulary

def test_world_layout_and_ade_vocabulary(synthetic_world: Path):
    paths = resolve_eval_paths("ade20k_panoptic", synthetic_world)
    assert paths.gt_json == synthetic_world.resolve() / "ade20k_panoptic" / "ade20k_panoptic_val.json"
    es = load_eval_set("ade20k_panoptic", paths, limit=3)
    raw = json.loads(paths.gt_json.read_text())
    # the vocabulary is the evaluation set's own categories (ids from 0, isthing), in file order
    assert es.names == [c["name"] for c in raw["categories"]]
    assert es.category_ids == [c["id"] for c in raw["categories"]] and es.category_ids[0] == 0
    assert es.is_thing == [bool(c["isthing"]) for c in raw["categories"]]
    assert [im.image_id for im in es.images] == [im["id"] for im in raw["images"][:3]]
    assert all(isinstance(im.image_id, str) for im in es.images)
    assert es.num_images_total == len(raw["images"])


def test_lvis_vocabulary_uses_spaces(synthetic_world: Path):
    es = load_eval_set("lvis", resolve_eval_paths("lvis", synthetic_world))
    raw = json.loads((synthetic_world / "lvis" / "lvis_v1_val.json").read_text())
    assert es.names == [c["name"].replace("_", " ") for c in raw["categories"]]
    assert es.category_ids == [c["id"] for c in raw["categories"]]
    assert all("_" not in n for n in es.names) and any("_" in c["name"] for c in raw["categories"])
    # LVIS v1 records have no file_name: resolved from coco_url into the val2017 folder
    assert all(Path(im.path).is_file() for im in es.images)


def test_ade_dataset_folder_layout(tmp_path: Path, synthetic_world: Path):
    """--data may point at ADEChallengeData2016 itself (Mask2Former's conversion output)."""
    ade = tmp_path / "ADEChallengeData2016"
    shutil.copytree(synthetic_world / "ade20k_panoptic", ade)
    for data in (tmp_path, ade):
        p = resolve_eval_paths("ade20k_panoptic", data)
        assert p.gt_json == ade / "ade20k_panoptic_val.json"
        assert p.images == ade / "images" / "validation" and p.gt_dir == ade / "ade20k_panoptic_val"
    with pytest.raises(ValueError, match="no ade20k_panoptic annotation file"):
        resolve_eval_paths("ade20k_panoptic", tmp_path / "ADEChallengeData2016" / "images")


def test_explicit_paths_real_coco_sample(shared_data: Path):
    s = _coco_sample(shared_data)
    es = load_eval_set("coco_panoptic", resolve_eval_paths("coco_panoptic", None, s["gt_json"], s["images"],
                                                           s["gt_dir"]))
    cats = json.loads(s["gt_json"].read_text())["categories"]
    assert len(es.names) == 133 and es.names == [c["name"] for c in cats]
    assert sum(es.is_thing) == 80
    with pytest.raises(ValueError, match="--gt-dir"):
        resolve_eval_paths("coco_panoptic", None, s["gt_json"], s["images"])


def test_gt_subset_keeps_only_evaluated_images(synthetic_world: Path, tmp_path: Path):
    es = load_eval_set("lvis", resolve_eval_paths("lvis", synthetic_world), limit=2)
    sub = json.loads(write_gt_subset(es, tmp_path / "sub.json").read_text())
    ids = {im.image_id for im in es.images}
    assert {im["id"] for im in sub["images"]} == ids
    assert sub["annotations"] and all(a["image_id"] in ids for a in sub["annotations"])
    full = json.loads(es.paths.gt_json.read_text())
    assert len(sub["annotations"]) == sum(a["image_id"] in ids for a in full["annotations"])
    assert sub["categories"] == full["categories"]
    whole = load_eval_set("lvis", es.paths)
    assert write_gt_subset(whole, tmp_path / "unused.json") == es.paths.gt_json


# ----------------------------------------------------------------------------- checkpoints

def test_checkpoint_dir_and_weights_file_load_the_same_tensors(tiny_model, tiny_checkpoint_dir, tiny_weights_file):
    m1, c1 = load_eval_model(tiny_checkpoint_dir)
    m2, c2 = load_eval_model(tiny_weights_file)
    ref = tiny_model.state_dict()
    for m in (m1, m2):
        sd = m.state_dict()
        assert set(sd) == set(ref) and all(torch.equal(sd[k], ref[k]) for k in ref)
    assert c1.kind == "training checkpoint" and c2.kind == "weights file"
    assert c1.default_size == c2.default_size == 128  # the tiny preset's training size
    assert c1.params == sum(p.numel() for p in tiny_model.parameters())
    assert c1.config["model"]["decoder"]["num_queries"] == 20


def test_wrong_shapes_give_clear_errors(tiny_model, tiny_checkpoint_dir, tmp_path: Path):
    from vloss.config import tiny
    from vloss.config_io import to_dict

    # weights of a 30-query network under a config that says 20 queries
    cfg = tiny()
    cfg.model.decoder.num_queries = 30
    from vloss.model import VLOSS

    bad = tmp_path / "bad.pt"
    save_model_weights(VLOSS(cfg.model), bad, to_dict(tiny()))
    with pytest.raises(WeightsError, match=r"bad\.pt.*\n.*query.*expected shape \(20, 64\), found \(30, 64\)"):
        load_eval_model(bad)
    # the same file with a preset that does not fit
    with pytest.raises(WeightsError, match="expected shape"):
        load_eval_model(bad, config="tiny")
    # a trainer checkpoint whose meta.json config disagrees with its tensors
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint_dir, ckpt)
    meta = json.loads((ckpt / "meta.json").read_text())
    meta["config"]["model"]["text"]["embed_dim"] = 32
    (ckpt / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match=r"(?s)state\.pt: weights do not fit.*expected shape"):
        load_eval_model(ckpt)


def test_weights_file_without_config_needs_a_preset(tiny_model, tmp_path: Path):
    path = tmp_path / "bare.pt"
    torch.save(tiny_model.state_dict(), path)
    with pytest.raises(ValueError, match="--config"):
        load_eval_model(path)
    model, info = load_eval_model(path, config="tiny")
    assert info.default_size == 128
    with pytest.raises(FileNotFoundError):
        load_eval_model(tmp_path / "missing.pt")


# ----------------------------------------------------------------------------- decode + predictor

@pytest.mark.parametrize("h,w,size,max_size,expected", [
    (427, 640, 128, 512, (128, 192)), (640, 427, 128, 512, (192, 128)),
    (100, 1000, 128, 512, (51, 512)), (64, 64, 128, 512, (128, 128))])
def test_resized_shape(h, w, size, max_size, expected):
    assert resized_shape(h, w, size, max_size) == expected


def test_decode_stage_resizes_and_reports_bad_images(shared_data: Path, tmp_path: Path):
    s = _coco_sample(shared_data)
    good = s["images"] / "000000142238.jpg"
    batch = {"index": np.array([0, 1, 2]), "path": np.array([str(good), str(tmp_path / "gone.jpg"), str(good)],
                                                             dtype=object),
             "height": np.array([427, 10, 400]), "width": np.array([640, 10, 640])}
    out = decode_eval_images(batch, size=128, max_size=512)
    assert out["error"][0] == "" and (out["rh"][0], out["rw"][0]) == (128, 192)
    arr = np.frombuffer(out["pixels"][0], np.uint8).reshape(128, 192, 3)
    with Image.open(good) as im:
        ref = np.asarray(im.convert("RGB").resize((192, 128), resample=Image.BILINEAR))
    assert np.array_equal(arr, ref)
    assert "gone.jpg" in out["error"][1] and out["pixels"][1] == b""
    assert "annotation file says 640x400" in out["error"][2]


def _predict(model, es, panoptic: bool, **kw):
    items = es.images
    batch = {"index": np.array([im.index for im in items]), "path": np.array([im.path for im in items], dtype=object),
             "height": np.array([im.height for im in items]), "width": np.array([im.width for im in items])}
    dec = decode_eval_images(batch, size=96, max_size=384)
    pred = EvalPredictor(model_config=_asdict(model.cfg), weights=model.state_dict(), source="mem",
                         names=es.names, category_ids=es.category_ids, is_thing=es.is_thing,
                         templates=["a photo of a {}."], panoptic=panoptic, **kw)
    return pred, pred(dec)


def _asdict(cfg):
    from dataclasses import asdict

    return asdict(cfg)


@pytest.mark.slow
def test_predictor_panoptic_png_matches_segments(tiny_model, shared_data: Path):
    s = _coco_sample(shared_data)
    es = load_eval_set("coco_panoptic", resolve_eval_paths("coco_panoptic", None, s["gt_json"], s["images"],
                                                           s["gt_dir"]))
    pred, out = _predict(tiny_model, es, True, object_mask_threshold=0.0, overlap_threshold=0.0)
    assert pred.vocab_sha256 == vocabulary_sha256(es.names, ["a photo of a {}."])
    assert pred.class_embeds.shape == (133, tiny_model.cfg.text.embed_dim)
    n_segments = 0
    for k, im in enumerate(es.images):
        assert out["error"][k] == ""
        with Image.open(io.BytesIO(out["png"][k])) as p:
            assert p.mode == "RGB"
            ids = rgb2id(np.asarray(p))  # [H, W]
        assert ids.shape == (im.height, im.width)  # predicted at the original size
        segs = json.loads(out["payload"][k])
        n_segments += len(segs)
        assert sorted(int(v) for v in np.unique(ids) if v != 0) == sorted(sg["id"] for sg in segs)
        thing = dict(zip(es.category_ids, es.is_thing))
        for sg in segs:
            mask = ids == sg["id"]
            assert sg["area"] == int(mask.sum()) > 0
            assert sg["bbox"] == mask_to_bbox(mask)
            assert sg["category_id"] in thing and sg["isthing"] == int(thing[sg["category_id"]])
    assert n_segments > 0


@pytest.mark.slow
def test_predictor_instances_topk_rle(tiny_model, synthetic_world: Path):
    es = load_eval_set("lvis", resolve_eval_paths("lvis", synthetic_world), limit=1)
    _, out = _predict(tiny_model, es, False, topk=300)
    for k, im in enumerate(es.images):
        dets = json.loads(out["payload"][k])
        # tiny: 20 queries x 72 classes = 1440 candidates, so exactly topk come back
        assert len(dets) == 300
        scores = [d["score"] for d in dets]
        assert all(0.0 <= v <= 1.0 for v in scores)
        assert {d["category_id"] for d in dets} <= set(es.category_ids)
        for d in dets[:5]:
            assert d["segmentation"]["size"] == [im.height, im.width]
            assert decode_rle(d["segmentation"]).shape == (im.height, im.width)


def test_predictor_passes_decode_errors_through(tiny_model, synthetic_world: Path):
    es = load_eval_set("lvis", resolve_eval_paths("lvis", synthetic_world), limit=1)
    bad = EvalImage(1, 12345, str(synthetic_world / "nope.jpg"), 50, 60, "nope.png")
    es.images = [es.images[0], bad]
    pred, out = _predict(tiny_model, es, False, topk=5)
    assert out["error"][0] == "" and len(json.loads(out["payload"][0])) == 5
    assert "nope.jpg" in out["error"][1] and out["payload"][1] == ""
    # the class embeddings were computed once, in the constructor: batches never run the text tower
    calls = []
    hook = pred.predictor.model.text.tower.transformer.register_forward_hook(lambda *a: calls.append(1))
    batch = {"index": np.array([0]), "path": np.array([es.images[0].path], dtype=object),
             "height": np.array([es.images[0].height]), "width": np.array([es.images[0].width])}
    again = pred(decode_eval_images(batch, size=96, max_size=384))
    assert calls == [] and again["payload"][0] == out["payload"][0]
    pred.predictor.model.text.clear_cache()  # the hook does see the text tower when it runs
    pred.predictor.model.class_embeddings(es.names[:2], ("a photo of a {}.",))
    hook.remove()
    assert calls


@pytest.mark.slow
def test_coco_instances_on_the_real_sample_scored_by_pycocotools(tiny_model, shared_data: Path, tmp_path: Path):
    """The real COCO sample's detection-format JSON (polygons and RLE) as an instance set:
    the predictor's detections form a results file that pycocotools' COCOeval scores."""
    from vloss.eval.coco_eval import coco_mask_ap

    s = _coco_sample(shared_data)
    es = load_eval_set("coco_instances", resolve_eval_paths("coco_instances", None, s["det_json"], s["images"]))
    raw = json.loads(s["det_json"].read_text())
    assert es.names == [c["name"] for c in raw["categories"]] and len(es.images) == 2
    _, out = _predict(tiny_model, es, False, topk=100)
    results = [{"image_id": im.image_id, **d} for k, im in enumerate(es.images) for d in json.loads(out["payload"][k])]
    assert len(results) == 200
    metrics = coco_mask_ap(s["det_json"], results, max_dets=100)
    assert all(metrics[k] is None or 0.0 <= metrics[k] <= 1.0 for k in ("AP", "AP50", "AP75"))
    assert metrics["results"]["num_kept"] == 200


def test_job_config_rejects_bad_settings():
    from pipelines.evaluate.config import EvalJobConfig

    with pytest.raises(ValueError, match="unknown task"):
        EvalJobConfig(task="ade20k", checkpoint="x", out="y")
    with pytest.raises(ValueError, match="limit must be positive"):
        EvalJobConfig(task="lvis", checkpoint="x", out="y", limit=0)
