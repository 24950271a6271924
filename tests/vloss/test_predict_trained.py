"""A trained checkpoint through the user's path: weights file -> ``python -m vloss predict`` -> PQ.

No real weights exist here, so the checkpoint is the ``tiny`` network trained for about a minute
on three synthetic-world panoptic images (``overfit_result`` in ``tests/fixtures_checkpoints.py``),
saved with ``save_model_weights``. The CLI is run on those images (as the run saw them: 128 x 128)
and its COCO-panoptic output is scored with the project's PQ scorer against the ground truth
written in the COCO panoptic format: the user's path must reproduce the quality the training
loop measured (golden: PQ > 0.8, and equal to the in-loop PQ within 0.02). An unseen
vocabulary then runs on the same checkpoint without retraining.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vloss.data.images import read_image
from vloss.data.masks import id2rgb
from vloss.data.synthetic import load_world
from vloss.inference.predict_cli import main
from vloss.inference.predictor import Predictor, Vocabulary

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained_images(overfit_result, synthetic_world: Path, tmp_path_factory) -> dict:
    """The overfit batch as image files + COCO-panoptic ground truth keyed like the CLI's output
    (image ids 1.. in file order, category ids = vocabulary order from 1)."""
    batch = overfit_result.batch
    root = tmp_path_factory.mktemp("trained_images")
    (root / "images").mkdir()
    (root / "gt").mkdir()
    paths = load_world(synthetic_world)["paths"]["coco_panoptic"]
    data = json.loads(Path(paths["train_json"]).read_text())
    cat_to_label = {c: k + 1 for k, c in enumerate(batch.category_ids)}
    images, annotations = [], []
    for k, (im, ids, segs) in enumerate(zip(data["images"], batch.gt_ids, batch.gt_segments)):
        rgb = read_image(Path(paths["train_images"]) / im["file_name"])
        name = f"img{k}.png"
        Image.fromarray(rgb).resize((128, 128), resample=Image.BILINEAR).save(root / "images" / name)
        Image.fromarray(id2rgb(ids), "RGB").save(root / "gt" / f"img{k}.panoptic.png")
        images.append({"id": k + 1, "file_name": name, "height": 128, "width": 128})
        annotations.append({"image_id": k + 1, "file_name": f"img{k}.panoptic.png",
                            "segments_info": [{**s, "category_id": cat_to_label[s["category_id"]]} for s in segs]})
    categories = [{"id": k + 1, "name": n, "isthing": int(t)}
                  for k, (n, t) in enumerate(zip(batch.vocabulary, batch.is_thing))]
    (root / "gt.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                              "categories": categories}))
    vocab = root / "vocab.txt"
    vocab.write_text("".join(f"{'thing' if t else 'stuff'}: {n}\n" for n, t in zip(batch.vocabulary, batch.is_thing)))
    return {"root": root, "vocab": vocab, "names": batch.vocabulary, "is_thing": batch.is_thing}


def test_cli_on_a_trained_checkpoint_reproduces_its_pq(trained_images: dict, trained_tiny_weights: Path,
                                                       overfit_result, tmp_path: Path):
    from vloss.eval.pq import pq_compute

    root, out = trained_images["root"], tmp_path / "pred"
    assert main([str(root / "images"), "--checkpoint", str(trained_tiny_weights), "--vocab-file",
                 str(trained_images["vocab"]), "--out", str(out), "--batch-size", "3"]) == 0
    coco = json.loads((out / "predictions.json").read_text())
    names = {s["name"] for a in coco["annotations"] for s in a["segments_info"]}
    assert names and names <= set(trained_images["names"])
    res = pq_compute(root / "gt.json", root / "gt", out / "predictions.json", out, workers=1)
    in_loop = overfit_result.pq["All"]["pq"]
    print(f"CLI PQ {res['All']['pq']:.4f} (in-loop {in_loop:.4f}) over {res['All']['n']} classes")
    assert res["All"]["pq"] > 0.8
    assert res["All"]["pq"] == pytest.approx(in_loop, abs=0.02)


def test_an_unseen_vocabulary_runs_without_retraining(trained_images: dict, trained_tiny_weights: Path):
    names, is_thing = trained_images["names"], trained_images["is_thing"]
    things = [n for n, t in zip(names, is_thing) if t][:6] + ["lamp post", "bicycle"]
    stuff = [n for n, t in zip(names, is_thing) if not t] + ["snowfield"]
    predictor = Predictor.from_checkpoint(trained_tiny_weights).set_vocabulary(things=things, stuff=stuff)
    preds = predictor(sorted(str(p) for p in (trained_images["root"] / "images").iterdir()))
    assert all(p.segments for p in preds)
    assert {s.name for p in preds for s in p.segments} <= set(things) | set(stuff)
    # a second vocabulary on the same predictor: only its names come back
    predictor.set_vocabulary(things=["lamp post"], stuff=["snowfield", "sky"])
    again = predictor(str(trained_images["root"] / "images" / "img0.png"))
    assert {s.name for s in again.segments} <= {"lamp post", "snowfield", "sky"}
    assert np.all(again.segment_ids >= 0)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_file_segments_like_the_predictor(trained_images: dict, trained_tiny_weights: Path, tmp_path: Path,
                                                   fmt: str, capsys):
    """``python -m vloss export`` with the run's vocabulary, then the exported file + NumPy post-processing
    only: the panoptic result equals the predictor's on every trained image."""
    from vloss.inference import postprocess_numpy as pn
    from vloss.inference.export_cli import main as export_main

    out = tmp_path / f"vloss.{'onnx' if fmt == 'onnx' else 'pt'}"
    assert export_main(["--checkpoint", str(trained_tiny_weights), "--vocab-file", str(trained_images["vocab"]),
                        "--format", fmt, "--size", "128", "128", "--out", str(out)]) == 0
    assert f"{fmt} file" in capsys.readouterr().out
    meta = pn.load_metadata(f"{out}.json")
    assert meta["class_names"] == trained_images["names"] and meta["is_thing"] == trained_images["is_thing"]
    if fmt == "onnx":
        ort = pytest.importorskip("onnxruntime")
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        run = lambda x: session.run(None, {meta["inputs"][0]["name"]: x})  # noqa: E731
    else:
        import torch

        module = torch.jit.load(str(out))
        run = lambda x: [t.detach().numpy() for t in module(torch.from_numpy(x))]  # noqa: E731
    predictor = Predictor.from_checkpoint(trained_tiny_weights).set_vocabulary(
        vocabulary=Vocabulary(trained_images["names"], trained_images["is_thing"]))
    paths = sorted((trained_images["root"] / "images").iterdir())
    rgb = [np.asarray(Image.open(p).convert("RGB")) for p in paths]  # 128 x 128: no resize at this size
    x, padded = pn.prepare_inputs(rgb, pad_to=(meta["height"], meta["width"]))
    logits, masks = run(x)  # [B, Q, C+1], [B, Q, 32, 32]
    for k, p in enumerate(paths):
        ids, segments = pn.panoptic_inference(logits[k], pn.resize_mask_logits(masks[k], (128, 128)),
                                              meta["is_thing"], 0.8, 0.8)
        ref = predictor(str(p))
        assert segments and np.array_equal(ids, ref.segment_ids), p.name
        assert [meta["class_names"][s["category"]] for s in segments] == [s.name for s in ref.segments]


def test_export_refuses_a_size_the_network_cannot_take(trained_tiny_weights: Path, tmp_path: Path, capsys):
    from vloss.inference.export_cli import main as export_main

    assert export_main(["--checkpoint", str(trained_tiny_weights), "--things", "dog", "--size", "100", "128",
                        "--out", str(tmp_path / "x.onnx")]) == 2
    assert "height 100 must be a positive multiple of the size divisor 32" in capsys.readouterr().err
