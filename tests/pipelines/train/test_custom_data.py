"""Your own dataset (issue #26 item 3, docs/CUSTOM_DATA.md): a sources file naming a COCO-format
panoptic set, a boxes-only detection set and a captions file with their own class names, pseudo
masks made by the job, a named recipe trained on them and the result evaluated with a vocabulary
file. The data is the real COCO panoptic sample of ``../shared/data`` renumbered and renamed."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from pipelines.train.sources import TrainingSources
from pipelines.train.sources_file import SourcesFileError


def _write(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


# ---- the sources file ------------------------------------------------------------------------------

def test_a_sources_file_names_every_file_relative_to_itself(tmp_path):
    f = _write(tmp_path / "lab" / "sources.json", {
        "panoptic": {"annotations": "ann/pan.json", "images": "img", "pngs": "ann/pan"},
        "detection": {"annotations": "/abs/boxes.json", "images": "s3://bucket/boxes"},
        "captions": [{"annotations": "cap.json", "images": "img", "name": "mine"},
                     {"annotations": "../other/cap.json", "images": "../other/img", "name": "web"}],
        "val": {"annotations": "ann/val.json", "images": "val", "pngs": "ann/val"}})
    src = TrainingSources.from_data(str(f))
    lab = tmp_path / "lab"
    assert (src.panoptic_json, src.panoptic_images, src.panoptic_png_dir) == (
        str(lab / "ann/pan.json"), str(lab / "img"), str(lab / "ann/pan"))
    assert (src.detection_json, src.detection_images) == ("/abs/boxes.json", "s3://bucket/boxes")
    assert [(c.json, c.images, c.name) for c in src.captions] == [
        (str(lab / "cap.json"), str(lab / "img"), "mine"),
        (str(tmp_path / "other/cap.json"), str(tmp_path / "other/img"), "web")]
    assert (src.val_json, src.val_png_dir) == (str(lab / "ann/val.json"), str(lab / "ann/val"))
    assert src.pseudo_masks is None and not src.box_masks
    only = TrainingSources.from_data(str(_write(tmp_path / "p.json", {
        "panoptic": {"annotations": "a.json", "images": "i", "pngs": "p"}})))
    assert only.detection_json is None and only.captions == [] and only.val_json is None


@pytest.mark.parametrize("spec, message", [
    ({"panoptc": {}}, r"unknown section 'panoptc' \(did you mean 'panoptic'\?\)"),
    ({"panoptic": {"annotations": "a.json", "images": "i"}}, r"panoptic\.pngs is missing"),
    ({"detection": {"annotation": "a.json", "images": "i"}},
     r"detection: unknown key 'annotation' \(did you mean 'annotations'\?\)"),
    ({"val": {"annotations": "", "images": "i", "pngs": "p"}}, r"val\.annotations is missing or not a non-empty"),
    ({"captions": {"annotations": "c.json", "images": "i", "name": "x"}}, r"captions must be a list"),
    ({"captions": [{"annotations": "c.json", "images": "i", "name": "x"}] * 2}, r"captions\[1\]\.name 'x' is used"),
    ([], r"expected a JSON object"),
])
def test_a_bad_sources_file_is_one_error_naming_file_and_entry(tmp_path, spec, message):
    f = _write(tmp_path / "sources.json", spec)
    with pytest.raises(SourcesFileError, match=message) as info:
        TrainingSources.from_data(str(f))
    assert str(f) in str(info.value)


def test_a_sources_file_with_missing_files_is_refused_before_any_work(tmp_path, capsys):
    """The pre-flight check names every missing file and the sources file that names it, and the
    sections the recipe's tasks need that the file lacks (t1_vloss trains detection too)."""
    from jobs.train import main as train_main

    f = _write(tmp_path / "sources.json", {
        "panoptic": {"annotations": "pan.json", "images": "img", "pngs": "pan"},
        "captions": [{"annotations": "cap.json", "images": "img", "name": "mine"}]})
    rc = train_main(["--recipe", "t1_vloss", "--config", "tiny", "--from-scratch", "--data", str(f),
                     "--out", str(tmp_path / "run"), "--set", "train.eval_every=0"])
    err = capsys.readouterr().err
    assert rc == 2
    for name in ("pan.json", "img", "cap.json"):
        assert f"{tmp_path / name} not found (named in {f})" in err, err
    assert f"detection boxes: {f} has no detection section" in err
    assert not (tmp_path / "run" / "data").exists()


def test_a_vocabulary_file_names_the_categories_things_then_stuff_or_is_refused(shared_data, tmp_path):
    """The file's things name the set's thing categories in order, its stuff the stuff ones; the
    ids, flags and images are the set's; other counts are refused naming both."""
    from pipelines.evaluate.data import EvalPaths, read_panoptic_set, with_vocabulary_file

    s = shared_data / "coco-panoptic-sample"
    ev = read_panoptic_set("coco_panoptic", EvalPaths(s / "panoptic_examples.json", s / "input_images",
                                                      s / "panoptic_examples"))
    n_things = sum(ev.is_thing)
    assert (n_things, len(ev.names) - n_things) == (80, 53)
    lines = [f"thing: t{k}" for k in range(80)] + [f"stuff: s{k}" for k in range(53)]
    f = tmp_path / "v.txt"
    f.write_text("\n".join(reversed(lines)))  # order within each kind is what counts, not the interleaving
    out = with_vocabulary_file(ev, f)
    things = iter(f"t{k}" for k in reversed(range(80)))
    stuff = iter(f"s{k}" for k in reversed(range(53)))
    assert out.names == [next(things) if t else next(stuff) for t in ev.is_thing]
    assert (out.category_ids, out.is_thing, out.images) == (ev.category_ids, ev.is_thing, ev.images)
    assert ev.names[0] == "person"  # the set itself is unchanged
    f.write_text("\n".join(lines[1:]))
    with pytest.raises(ValueError, match=r"79 things and 53 stuff names, but .*panoptic_examples.json has 80 thing "
                                         r"and 53 stuff categories"):
        with_vocabulary_file(ev, f)
    with pytest.raises(ValueError, match=r"--vocab-file .*missing.txt: cannot be read"):
        with_vocabulary_file(ev, tmp_path / "missing.txt")


# ---- end to end on the real COCO sample -------------------------------------------------------------

@pytest.fixture(scope="module")
def custom_dataset(shared_data, tmp_path_factory) -> dict[str, Path]:
    """The two COCO val photos as a lab's own dataset: only the categories they use, renumbered
    1..K and renamed ("our person"), panoptic PNGs as published, the detection file without its
    masks, captions written from the segments, a sources file and a vocabulary file."""
    sample = shared_data / "coco-panoptic-sample"
    root = tmp_path_factory.mktemp("custom")
    shutil.copytree(sample / "input_images", root / "images")
    shutil.copytree(sample / "panoptic_examples", root / "panoptic")
    pan = json.loads((sample / "panoptic_examples.json").read_text())
    used = sorted({s["category_id"] for a in pan["annotations"] for s in a["segments_info"]})
    coco = {c["id"]: c for c in pan["categories"]}
    new_id = {old: k + 1 for k, old in enumerate(used)}
    categories = [{"id": new_id[old], "name": f"our {coco[old]['name']}", "isthing": coco[old]["isthing"],
                   "supercategory": coco[old]["supercategory"]} for old in used]
    for a in pan["annotations"]:
        for s in a["segments_info"]:
            s["category_id"] = new_id[s["category_id"]]
    _write(root / "panoptic.json", {**pan, "categories": categories})
    det = json.loads((sample / "panoptic_coco_detection_format.json").read_text())
    boxes = [{k: v for k, v in a.items() if k != "segmentation"} | {"category_id": new_id[a["category_id"]]}
             for a in det["annotations"] if coco[a["category_id"]]["isthing"]]
    _write(root / "boxes.json", {"images": det["images"], "annotations": boxes,
                                 "categories": [c for c in categories if c["isthing"]]})
    by_id = {c["id"]: c["name"] for c in categories}
    caps = [{"id": k + 1, "image_id": a["image_id"],
             "caption": "a photo of " + ", ".join(sorted({by_id[s["category_id"]] for s in a["segments_info"]}))}
            for k, a in enumerate(pan["annotations"])]
    _write(root / "captions.json", {"images": pan["images"], "annotations": caps})
    _write(root / "sources.json", {
        "panoptic": {"annotations": "panoptic.json", "images": "images", "pngs": "panoptic"},
        "detection": {"annotations": "boxes.json", "images": "images"},
        "captions": [{"annotations": "captions.json", "images": "images", "name": "lab_captions"}],
        "val": {"annotations": "panoptic.json", "images": "images", "pngs": "panoptic"}})
    # the evaluation's prompts: the set's categories, things then stuff in file order, named in words
    vocab = [f"thing: {coco[old]['name'].replace('-merged', '').replace('-other', '')}" for old in used
             if coco[old]["isthing"]]
    vocab += [f"stuff: {coco[old]['name'].replace('-merged', '').replace('-other', '')}" for old in used
              if not coco[old]["isthing"]]
    (root / "vocab.txt").write_text("# prompts for our classes\n" + "\n".join(vocab) + "\n")
    return {"root": root, "categories": categories, "vocab": [v.split(":", 1)[1].strip() for v in vocab]}


SMALL = ["input.dense_size=64", "input.caption_size=32", "train.dense_batch_size=1", "train.caption_batch_size=2",
         "loss.num_points=128", "model.decoder.num_queries=8", "train.eval_every=0",
         "train.log_every=1"]


@pytest.mark.slow
def test_own_dataset_pseudo_masks_a_named_recipe_and_an_evaluation_with_a_vocabulary_file(
        custom_dataset, tiny_checkpoint, ray_session, tmp_path):
    from jobs.evaluate import main as eval_main
    from jobs.pseudo_masks import main as pseudo_main
    from jobs.train import main as train_main
    from pipelines.train.schedule import ScheduleConfig, StepSchedule
    from pipelines.train.shards import read_vocabulary
    from tests.fixtures_teacher import TINY_ARCH, TINY_MAX_SIZE, TINY_MIN_SIZE

    root, cats = custom_dataset["root"], custom_dataset["categories"]
    pm = tmp_path / "pseudo_masks"
    assert pseudo_main(["--annotations", str(root / "boxes.json"), "--images", str(root / "images"),
                        "--checkpoint", str(tiny_checkpoint), "--out", str(pm), "--set", f"teacher.arch={TINY_ARCH}",
                        "--set", f"teacher.min_size={TINY_MIN_SIZE}", "--set", f"teacher.max_size={TINY_MAX_SIZE}",
                        "--num-overlays", "0"]) == 0
    run = tmp_path / "run"
    argv = ["--recipe", "t1_vloss", "--config", "tiny", "--from-scratch", "--data", str(root / "sources.json"),
            "--pseudo-masks", str(pm), "--workers", "1", "--out", str(run)]
    for kv in SMALL:
        argv += ["--set", kv]
    assert train_main(argv) == 0
    shards = run / "data" / "shards"
    manifest = json.loads((shards / "_manifest.json").read_text())
    assert {t: v["images"] for t, v in manifest["tasks"].items()} == {"panoptic": 2, "detection": 2, "captions": 2}
    assert manifest["tasks"]["captions"]["per_source"] == {"lab_captions": 2}
    assert read_vocabulary(str(shards), "panoptic").names == [c["name"] for c in cats]
    assert read_vocabulary(str(shards), "detection").names == [c["name"] for c in cats if c["isthing"]]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    total = StepSchedule(ScheduleConfig.from_dict(json.loads((run / "config.json").read_text())["schedule"]))
    assert [r["step"] for r in rows if "task" in r] == list(range(1, total.total_steps + 1))
    assert {r["task"] for r in rows if "task" in r} == {"panoptic", "detection", "captions"}
    assert all(math.isfinite(v) for r in rows for k, v in r.items() if "/loss_" in k)
    result = json.loads((run / "result.json").read_text())

    ev = tmp_path / "eval"
    assert eval_main(["--task", "coco_panoptic", "--checkpoint", result["checkpoint"],
                      "--gt-json", str(root / "panoptic.json"), "--images", str(root / "images"),
                      "--gt-dir", str(root / "panoptic"), "--vocab-file", str(root / "vocab.txt"), "--out", str(ev),
                      "--set", "overlays=1", "--set", "batch_size=1"]) == 0
    report = json.loads((ev / "metrics.json").read_text())
    vocab = json.loads((ev / "predictions" / "manifest.json").read_text())["vocabulary"]
    # each category is prompted with its name from the file: things in file order, then stuff
    assert vocab["category_ids"] == [c["id"] for c in cats]
    thing_names = iter(n for n, c in zip(custom_dataset["vocab"], _things_then_stuff(cats)) if c["isthing"])
    stuff_names = iter(n for n, c in zip(custom_dataset["vocab"], _things_then_stuff(cats)) if not c["isthing"])
    assert vocab["names"] == [next(thing_names) if c["isthing"] else next(stuff_names) for c in cats]
    assert vocab["file"] == str(root / "vocab.txt")
    assert report["config"]["evaluation"]["vocab_file"] == str(root / "vocab.txt")
    assert 0.0 <= report["metrics"]["All"]["pq"] <= 1.0 and report["metrics"]["All"]["n"] == len(cats)
    assert list((ev / "overlays").glob("*.png"))


def _things_then_stuff(cats: list[dict]) -> list[dict]:
    return [c for c in cats if c["isthing"]] + [c for c in cats if not c["isthing"]]
