"""Training shards round-trip every task's rows against the source files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.common.pseudo_mask_format import iter_records
from pipelines.train.shards import SCHEMA, count_rows, iter_rows, read_vocabulary
from vloss.data.coco_captions import read_coco_captions
from vloss.data.coco_panoptic import load_panoptic_ids, read_coco_panoptic
from vloss.data.masks import decode_rle

pytestmark = pytest.mark.slow


def _rle(row, inst):
    return decode_rle({"size": [row["height"], row["width"]], "counts": inst["segmentation"]})


def test_panoptic_rows_equal_pngs(train_shards: Path, synthetic_world: Path):
    ds = read_coco_panoptic(synthetic_world / "coco_panoptic/annotations/panoptic_train2017.json",
                            synthetic_world / "coco_panoptic/train2017",
                            synthetic_world / "coco_panoptic/annotations/panoptic_train2017")
    vocab = read_vocabulary(train_shards, "panoptic")
    assert vocab.names == [c.name for c in ds.categories]
    by_id = {int(im.id): im for im in ds.images}
    rows = list(iter_rows(train_shards, "panoptic"))
    assert sorted(r["image_id"] for r in rows) == sorted(by_id)
    for row in rows:
        im = by_id[row["image_id"]]
        assert row["task"] == "panoptic" and row["image"] == Path(im.image_path).read_bytes()
        ids = load_panoptic_ids(im.png_path)
        segs = {s.id: s for s in im.segments}
        assert sorted(i["id"] for i in row["instances"]) == sorted(segs)
        for inst in row["instances"]:
            s = segs[inst["id"]]
            assert np.array_equal(_rle(row, inst), ids == s.id)
            assert inst["category_id"] == s.category_id and vocab.category_ids[inst["label"]] == s.category_id
            assert inst["isthing"] == s.isthing and inst["iscrowd"] == bool(s.iscrowd)
            assert inst["area"] == s.area


def test_detection_rows_equal_pseudo_masks(train_shards: Path, synthetic_world: Path):
    pseudo = {r["image_id"]: r for r in iter_records(train_shards.parent / "pseudo_masks")}
    train = json.loads((synthetic_world / "objects365/annotations/train.json").read_text())
    boxes = {a["id"]: a for a in train["annotations"]}
    rows = list(iter_rows(train_shards, "detection"))
    assert len(rows) == len({a["image_id"] for a in train["annotations"]})
    assert sum(len(r["instances"]) for r in rows) == len(boxes)
    vocab = read_vocabulary(train_shards, "detection")
    for row in rows:
        p = {i["id"]: i for i in pseudo[row["image_id"]]["instances"]}
        for inst in row["instances"]:
            assert np.array_equal(_rle(row, inst), p[inst["id"]]["mask"])
            assert inst["category_id"] == boxes[inst["id"]]["category_id"]
            assert vocab.names[inst["label"]] == next(c["name"] for c in train["categories"]
                                                      if c["id"] == inst["category_id"])


def test_caption_rows_equal_caption_files(train_shards: Path, synthetic_world: Path):
    want = {}
    for k, (j, d) in enumerate([("coco_panoptic/annotations/captions_train2017.json", "coco_panoptic/train2017"),
                                ("image_text/annotations/captions.json", "image_text/images")]):
        for im in read_coco_captions(synthetic_world / j, synthetic_world / d).images:
            want[k * 10 ** 12 + int(im.id)] = (sorted(im.captions), Path(im.path).read_bytes())
    rows = list(iter_rows(train_shards, "captions"))
    assert count_rows(train_shards, "captions") == len(rows) == len(want)
    for row in rows:
        caps, data = want[row["image_id"]]
        assert sorted(row["captions"]) == caps and row["image"] == data
        assert Image.open(__import__("io").BytesIO(row["image"])).size == (row["width"], row["height"])


def test_one_schema_for_all_tasks(train_shards: Path):
    import pyarrow.parquet as pq

    for task in ("panoptic", "detection", "captions"):
        for f in sorted((train_shards / task).glob("part-*.parquet")):
            assert pq.read_schema(f).remove_metadata().equals(SCHEMA)


def test_sources_given_as_uris_give_the_same_rows(train_shards: Path, synthetic_world: Path, tmp_path: Path):
    """Every source named by a file:// URI (the object-store code path) -> identical rows."""
    from pipelines.train.sources import TrainingSources, build_training_shards

    local = TrainingSources.from_layout(str(synthetic_world), str(train_shards.parent / "pseudo_masks"),
                                        extra_image_text=True)
    uri = lambda p: Path(p).resolve().as_uri()  # noqa: E731
    remote = TrainingSources(
        panoptic_json=uri(local.panoptic_json), panoptic_images=uri(local.panoptic_images),
        panoptic_png_dir=uri(local.panoptic_png_dir), detection_json=uri(local.detection_json),
        detection_images=uri(local.detection_images), pseudo_masks=uri(local.pseudo_masks),
        captions=[type(c)(uri(c.json), uri(c.images), c.name) for c in local.captions])
    out = tmp_path / "uri_shards"
    build_training_shards(remote, out.as_uri(), rows_per_shard=32)
    for task in ("panoptic", "detection", "captions"):
        a = sorted(iter_rows(train_shards, task), key=lambda r: r["image_id"])
        b = sorted(iter_rows(out, task), key=lambda r: r["image_id"])
        assert len(a) == len(b) > 0
        for ra, rb in zip(a, b):
            assert ra["image"] == rb["image"] and ra["instances"] == rb["instances"]
            assert ra["captions"] == rb["captions"] and ra["file_name"] == rb["file_name"]


def test_box_masks_rows_equal_the_box_backend_pseudo_masks(train_shards: Path, synthetic_world: Path, tmp_path):
    """``box_masks`` fills each clipped box inside the shard tasks; the rows must be exactly those built
    from the pseudo-mask job's box backend (same clipped boxes, same pixels, same areas and scores)."""
    from pipelines.train.sources import TrainingSources, build_training_shards, detection_sources

    sources = TrainingSources.from_layout(str(synthetic_world))
    sources.box_masks = True
    sources.panoptic_json, sources.captions = None, []
    build_training_shards(sources, str(tmp_path), rows_per_shard=32)
    want = list(iter_rows(train_shards, "detection"))
    got = list(iter_rows(tmp_path, "detection"))
    assert len(got) == len(want) > 0
    assert got == want
    with pytest.raises(ValueError, match="exactly one of"):
        detection_sources(sources.detection_json, sources.detection_images, None, box_masks=False)


def test_a_shard_root_is_exact_and_belongs_to_one_plan(synthetic_world: Path, tmp_path, ray_session):
    """Defect 5 of issue #15: with the manifest and some shards deleted, a re-run with another
    rows_per_shard built 80 panoptic rows for 48 images. Now another plan is refused (or replaces
    the set as a new generation with --overwrite), and readers refuse a set missing a shard."""
    from pipelines.common.output_set import OutputConflictError, ShardSetError
    from pipelines.train.sources import TrainingSources, build_training_shards

    sources = TrainingSources.from_layout(str(synthetic_world))
    sources.detection_json, sources.captions = None, []
    root = tmp_path / "shards"
    first = build_training_shards(sources, str(root), rows_per_shard=32)
    n = len(json.loads((synthetic_world / "coco_panoptic/annotations/panoptic_train2017.json").read_text())["images"])
    assert count_rows(root, "panoptic") == n == first["tasks"]["panoptic"]["images"]
    (root / "_manifest.json").unlink()
    next(iter(sorted((root / "gen-0001" / "panoptic").glob("part-*.parquet")))).unlink()
    with pytest.raises(OutputConflictError, match=r"rows_per_shard: 32 -> 16"):
        build_training_shards(sources, str(root), rows_per_shard=16)
    build_training_shards(sources, str(root), rows_per_shard=16, overwrite=True)
    ids = [r["image_id"] for r in iter_rows(root, "panoptic", columns=["image_id"])]
    assert len(ids) == len(set(ids)) == n and count_rows(root, "panoptic") == n
    assert sorted(p.name for p in root.glob("gen-*")) == ["gen-0002"]
    victim = sorted((root / "gen-0002" / "panoptic").glob("part-*.parquet"))[1]
    victim.unlink()
    with pytest.raises(ShardSetError, match=r"part-00001.parquet missing"):
        list(iter_rows(root, "panoptic"))
    again = build_training_shards(sources, str(root), rows_per_shard=16)  # the same plan: completes it
    assert again["tasks"]["panoptic"]["written"] == 1 and count_rows(root, "panoptic") == n


def test_rerunning_the_pseudo_mask_job_or_moving_the_tree_keeps_the_shards(synthetic_world: Path, tmp_path,
                                                                            ray_session):
    """Issue #21 item 9: a no-op re-run of the pseudo-mask job rewrites its manifest's bookkeeping
    (shards written/kept, seconds, paths); the training shards built from it stay valid, also
    after the whole output tree moved to another path."""
    import shutil

    from pipelines.pseudo_masks.config import PseudoMaskJobConfig
    from pipelines.pseudo_masks.job import run_pseudo_masks
    from pipelines.train.data_prep import prepare_shards
    from vloss.teacher.config import TeacherConfig

    o365 = synthetic_world / "objects365"

    def pseudo(out: Path) -> None:
        run_pseudo_masks(PseudoMaskJobConfig(annotations=str(o365 / "annotations" / "train.json"),
                                             images=str(o365 / "images" / "train"), out=str(out),
                                             teacher=TeacherConfig(backend="box"), rows_per_shard=32))

    work = tmp_path / "a"
    pseudo(work / "pseudo_masks")
    root = prepare_shards(str(synthetic_world), str(work), pseudo_masks=str(work / "pseudo_masks"), rows_per_shard=32)
    manifest = (Path(root) / "_manifest.json").read_text()
    pm_manifest = (work / "pseudo_masks" / "_manifest.json").read_text()
    pseudo(work / "pseudo_masks")  # the same command again: keeps every shard, rewrites its manifest
    assert (work / "pseudo_masks" / "_manifest.json").read_text() != pm_manifest
    assert prepare_shards(str(synthetic_world), str(work), pseudo_masks=str(work / "pseudo_masks"),
                          rows_per_shard=32) == root
    assert (Path(root) / "_manifest.json").read_text() == manifest  # nothing rebuilt
    moved = tmp_path / "b"
    shutil.move(str(work), str(moved))
    again = prepare_shards(str(synthetic_world), str(moved), pseudo_masks=str(moved / "pseudo_masks"),
                           rows_per_shard=32)
    assert (Path(again) / "_manifest.json").read_text() == manifest


def test_an_image_whose_size_differs_from_its_annotation_is_refused_while_shards_are_built(tmp_path):
    """Issue #28 item 6: found when the shards are built, not a minute into training; an EXIF-rotated
    photo is compared in the orientation a viewer shows (the annotation's)."""
    from PIL import Image

    from pipelines.train.shards import SourceImage, build_rows

    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")  # 40 wide, 30 high
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display: shown 30 wide, 40 high
    Image.new("RGB", (40, 30)).save(tmp_path / "r.jpg", exif=exif)

    def src(name, h, w):
        return SourceImage(image_id=7, image_uri=str(tmp_path / name), file_name=name, height=h, width=w,
                           instances=[], captions=["a photo"])

    assert build_rows([src("a.png", 30, 40), src("r.jpg", 40, 30)], "captions", "coco_captions").num_rows == 2
    with pytest.raises(ValueError, match=r"coco_captions image 7 \(.*a.png\): the image is 40x30 \(WxH\) but its "
                                         r"annotation says 30x40"):
        build_rows([src("a.png", 40, 30)], "captions", "coco_captions")


def test_a_stray_file_among_the_shards_is_named_then_removed_by_the_rerun(synthetic_world: Path, tmp_path,
                                                                          ray_session, capsys):
    """Issue #28 item 2: a file the manifest does not list (a copy left by hand) is named by the
    readers, and the same build command removes it and keeps the set; no shard is rewritten."""
    from pipelines.common.output_set import ShardSetError
    from pipelines.train.sources import TrainingSources, build_training_shards

    sources = TrainingSources.from_layout(str(synthetic_world))
    sources.detection_json, sources.captions = None, []
    root = tmp_path / "shards"
    first = build_training_shards(sources, str(root), rows_per_shard=32)
    shard = sorted((root / "gen-0001" / "panoptic").glob("part-*.parquet"))[0]
    stray = shard.with_name("part-00000 (copy).parquet")
    stray.write_bytes(shard.read_bytes())
    loose = root / "gen-0001" / "notes.txt"  # beside the task folders
    loose.write_text("left by hand")
    with pytest.raises(ShardSetError, match=r"part-00000 \(copy\).parquet not in the manifest"):
        list(iter_rows(root, "panoptic"))
    capsys.readouterr()
    again = build_training_shards(sources, str(root), rows_per_shard=32)
    out = capsys.readouterr().out
    assert f"removed {stray}" in out and f"removed {loose}" in out
    assert not stray.exists() and not loose.exists() and (root / "gen-0001" / "panoptic" / "vocab.json").exists()
    assert again["tasks"]["panoptic"]["written"] == 0 and again["shards"] == first["shards"]
    assert count_rows(root, "panoptic") == first["tasks"]["panoptic"]["images"]
