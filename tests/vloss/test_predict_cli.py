"""``python -m vloss predict``: files a user can open with the standard tools, bad images skipped and reported.

Independent checks: the panoptic output is scored against itself with the COCO panoptic rules
(PQ = 1 needs every PNG segment listed with its true area and category); the instance results
load with pycocotools' ``loadRes``, whose areas must equal the masks'; images are real COCO photos
from ``../shared/data``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vloss.data.masks import rgb2id
from vloss.inference.predict_cli import main

COCO_IMAGES = "coco-panoptic-sample/input_images"
VOCAB = "thing: person\nthing: car\nthing: dog\nstuff: sky\nstuff: grass\n"


@pytest.fixture()
def photos(tmp_path: Path, shared_data: Path) -> Path:
    """Two COCO photos, a PNG copy of one under a sub-name, a corrupt JPEG and a text file."""
    d = tmp_path / "photos"
    d.mkdir()
    for p in sorted((shared_data / COCO_IMAGES).glob("*.jpg")):
        shutil.copy(p, d / p.name)
    first = sorted(d.glob("*.jpg"))[0]
    Image.open(first).convert("RGB").resize((200, 150)).save(d / "small.png")
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (d / "notes.txt").write_text("not an image")
    return d


def _vocab(tmp_path: Path) -> Path:
    f = tmp_path / "vocab.txt"
    f.write_text(VOCAB)
    return f


def test_panoptic_outputs_score_pq_1_against_themselves(photos: Path, tmp_path: Path, tiny_checkpoint_dir: Path,
                                                        capsys):
    from vloss.eval.pq import pq_compute

    out = tmp_path / "out"
    rc = main([str(photos), "--checkpoint", str(tiny_checkpoint_dir), "--vocab-file", str(_vocab(tmp_path)),
               "--out", str(out), "--threshold", "0", "--overlap-threshold", "0", "--batch-size", "3"])
    assert rc == 0
    err = capsys.readouterr()
    assert "3/4 images segmented" in err.out and "skipped" in err.err and "broken.jpg" in err.err
    errors = json.loads((out / "errors.json").read_text())
    # every file found is segmented or reported: the text file too (issue #28 item 8)
    assert sorted(Path(e["image"]).name for e in errors) == ["broken.jpg", "notes.txt"]
    coco = json.loads((out / "predictions.json").read_text())
    assert [c["name"] for c in coco["categories"]] == ["person", "car", "dog", "sky", "grass"]
    assert [c["id"] for c in coco["categories"]] == [1, 2, 3, 4, 5]
    assert sorted(im["file_name"] for im in coco["images"]) == sorted(
        p.name for p in photos.iterdir() if p.suffix in (".jpg", ".png") and p.name != "broken.jpg")
    n_segments = 0
    for ann, im in zip(coco["annotations"], coco["images"]):
        ids = rgb2id(np.asarray(Image.open(out / ann["file_name"]).convert("RGB")))  # [H, W]
        assert ids.shape == (im["height"], im["width"])
        listed = {s["id"]: s for s in ann["segments_info"]}
        assert set(np.unique(ids).tolist()) - {0} == set(listed)
        for sid, s in listed.items():
            assert s["area"] == int((ids == sid).sum())
        n_segments += len(listed)
        stem = Path(ann["file_name"]).name.removesuffix(".panoptic.png")
        assert (out / f"{stem}.overlay.png").is_file() and (out / f"{stem}.json").is_file()
        with Image.open(out / f"{stem}.overlay.png") as ov:
            assert ov.size == (im["width"], im["height"])
    assert n_segments > 0
    res = pq_compute(out / "predictions.json", out, out / "predictions.json", out, workers=1)
    assert res["All"]["pq"] == pytest.approx(1.0)
    assert res["All"]["n"] == len({s["category_id"] for a in coco["annotations"] for s in a["segments_info"]})


def test_instance_results_load_in_pycocotools(photos: Path, tmp_path: Path, tiny_checkpoint_dir: Path):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    out = tmp_path / "inst"
    assert main([str(photos / "*.jpg"), "--checkpoint", str(tiny_checkpoint_dir), "--task", "instance",
                 "--things", "person,car", "--stuff", "sky", "--out", str(out), "--topk", "5"]) == 0
    coco = json.loads((out / "predictions.json").read_text())
    gt = COCO()
    gt.dataset = {"images": coco["images"], "categories": coco["categories"], "annotations": []}
    gt.createIndex()
    results = json.loads((out / "results.json").read_text())
    dt = gt.loadRes(str(out / "results.json"))
    assert len(dt.anns) == len(results) == 5 * len(coco["images"])
    assert {a["category_id"] for a in dt.anns.values()} <= {1, 2}  # things only
    per_image = {}
    for im in coco["images"]:
        stem = Path(im["file_name"]).stem
        per_image[im["id"]] = json.loads((out / f"{stem}.json").read_text())["detections"]
    for a in dt.anns.values():
        same = [d for d in per_image[a["image_id"]] if d["segmentation"]["counts"] == a["segmentation"]["counts"]]
        assert same and int(mask_utils.area(a["segmentation"])) == same[0]["area"]


def test_semantic_png_and_legend(photos: Path, tmp_path: Path, tiny_checkpoint_dir: Path):
    out = tmp_path / "sem"
    assert main([str(photos / "small.png"), "--checkpoint", str(tiny_checkpoint_dir), "--task", "semantic",
                 "--things", "person", "--stuff", "sky,grass", "--out", str(out)]) == 0
    labels = np.asarray(Image.open(out / "small.semantic.png")).astype(np.int64)
    legend = json.loads((out / "small.json").read_text())["legend"]
    assert labels.shape == (150, 200) and set(np.unique(labels).tolist()) == {d["category_id"] for d in legend}
    for d in legend:
        assert d["area"] == int((labels == d["category_id"]).sum())


def test_bad_invocations_exit_2_with_one_line(tmp_path: Path, photos: Path, tiny_checkpoint_dir: Path, capsys):
    base = [str(photos), "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as e:  # no classes
        main(base + ["--checkpoint", str(tiny_checkpoint_dir)])
    assert e.value.code == 2 and "--things/--stuff or with --vocab-file" in capsys.readouterr().err
    assert main(base + ["--checkpoint", str(tmp_path / "none.pt"), "--things", "dog"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(base + ["--checkpoint", str(tiny_checkpoint_dir), "--things", "dog,Dog"]) == 2
    assert "duplicate class name" in capsys.readouterr().err
    assert main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"), "--checkpoint", str(tiny_checkpoint_dir),
                 "--things", "dog"]) == 2
    assert "no such file, folder or pattern" in capsys.readouterr().err


def test_only_bad_images_exit_1(tmp_path: Path, photos: Path, tiny_checkpoint_dir: Path):
    out = tmp_path / "o"
    assert main([str(photos / "broken.jpg"), "--checkpoint", str(tiny_checkpoint_dir), "--things", "dog",
                 "--out", str(out)]) == 1
    assert len(json.loads((out / "errors.json").read_text())) == 1


@pytest.mark.slow
def test_module_entry_point(tmp_path: Path, photos: Path, tiny_weights_file: Path):
    proc = subprocess.run([sys.executable, "-m", "vloss", "predict", str(photos / "small.png"), "--checkpoint",
                           str(tiny_weights_file), "--things", "dog", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o" / "small.overlay.png").is_file()


def test_output_names_never_collide():
    from vloss.inference.predict_cli import _stems

    stems = _stems([Path("a/x.png"), Path("b/x.jpg"), Path("c/x_1.jpg"), Path("d/X.png")])
    assert len({s.lower() for s in stems}) == 4 and stems[0] == "x"


def test_every_file_is_segmented_or_reported_and_settings_are_bounded(tmp_path: Path, photos: Path,
                                                                      tiny_checkpoint_dir: Path, capsys):
    """Issue #28 item 8: colliding names, an animated GIF (first frame), a zero-byte file, a
    symlink leading outside the folder; NaN or negative thresholds and a huge --size refused."""
    d = tmp_path / "in"
    d.mkdir()
    first = sorted(photos.glob("*.jpg"))[0]
    small = Image.open(first).convert("RGB").resize((96, 64))
    small.save(d / "x.png")
    small.save(d / "x.jpg")
    small.save(d / "x_1.jpg")
    frames = [small, small.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    frames[0].save(d / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    (d / "empty.jpg").write_bytes(b"")
    secret = tmp_path / "secret.png"
    small.save(secret)
    (d / "link.png").symlink_to(secret)
    out = tmp_path / "out"
    args = [str(d), "--checkpoint", str(tiny_checkpoint_dir), "--things", "dog", "--out", str(out)]
    assert main(args) == 0
    written = sorted(p.name for p in out.glob("*.json") if p.name not in ("predictions.json", "errors.json",
                                                                           "vocabulary.json"))
    # x.jpg -> x, x.png -> x_1, x_1.jpg -> x_1 is taken -> x_1_1: three outputs, none overwritten
    assert written == ["anim.json", "x.json", "x_1.json", "x_1_1.json"]
    errors = {Path(e["image"]).name: e["reason"] for e in json.loads((out / "errors.json").read_text())}
    assert set(errors) == {"empty.jpg", "link.png"}
    assert "empty file" in errors["empty.jpg"] and "0x" not in errors["empty.jpg"]
    assert "outside" in errors["link.png"]
    capsys.readouterr()
    for bad, message in ((["--threshold", "nan"], "--threshold must be in [0, 1]"),
                         (["--overlap-threshold", "-0.5"], "--overlap-threshold must be in [0, 1]"),
                         (["--size", "100000"], "--size 100000 is outside [32, ")):
        assert main(args + bad) == 2
        assert message in capsys.readouterr().err
