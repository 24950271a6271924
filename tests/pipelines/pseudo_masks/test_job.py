"""The Ray Data pseudo-mask job end to end, on the synthetic world and the real COCO sample."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from pipelines.common.actor_pool import ActorPoolConfig
from pipelines.common.output_set import OutputConflictError, ShardSetError
from pipelines.common.pseudo_mask_format import export_coco, iter_records, read_shard, record_to_target
from pipelines.common.storage import locate
from pipelines.pseudo_masks.config import PseudoMaskJobConfig
from pipelines.pseudo_masks.job import PseudoMaskJobError, pseudo_mask_dataset, run_pseudo_masks
from pipelines.pseudo_masks.quality import evaluate_output
from tests.fixtures_teacher import TINY_ARCH, TINY_MAX_SIZE, TINY_MIN_SIZE, load_json
from vloss.teacher import BoxConditionedMaskRCNN, TeacherConfig, box_pixel_bounds, load_teacher

pytestmark = pytest.mark.slow


def _box_config(ann, images, out, **kw) -> PseudoMaskJobConfig:
    return PseudoMaskJobConfig(annotations=str(ann), images=str(images), out=str(out),
                               teacher=TeacherConfig(backend="box"), **kw)


@pytest.fixture(scope="module", params=["synthetic", "sample"])
def box_run(request, ray_session, tmp_path_factory):
    """The box backend over a whole source; the synthetic copy gets one box pushed past the
    image's right edge so that clipping is exercised."""
    source = request.getfixturevalue(f"{request.param}_source")
    tmp = tmp_path_factory.mktemp(f"box_{request.param}")
    data = load_json(source.annotations)
    clipped_ids = set()
    if request.param == "synthetic":
        ann = data["annotations"][0]
        img = next(i for i in data["images"] if i["id"] == ann["image_id"])
        ann["bbox"] = [ann["bbox"][0], ann["bbox"][1], img["width"] - ann["bbox"][0] + 25.0, ann["bbox"][3]]
        clipped_ids.add(ann["id"])
    ann_path = tmp / "boxes.json"
    ann_path.write_text(json.dumps(data))
    cfg = _box_config(ann_path, source.images, tmp / "out", rows_per_shard=3 if request.param == "synthetic" else 1)
    manifest = run_pseudo_masks(cfg)
    return {"source": source, "data": data, "cfg": cfg, "out": tmp / "out", "manifest": manifest,
            "clipped_ids": clipped_ids}


def test_every_box_gets_exactly_one_mask_inside_its_clipped_box(box_run):
    data, out, manifest = box_run["data"], box_run["out"], box_run["manifest"]
    images = {im["id"]: im for im in data["images"]}
    anns = {a["id"]: a for a in data["annotations"]}
    with_boxes = sorted({a["image_id"] for a in data["annotations"]})
    records = list(iter_records(out))
    assert [r["image_id"] for r in records] == with_boxes                     # one row per image with boxes
    seen = [i["id"] for r in records for i in r["instances"]]
    assert sorted(seen) == sorted(anns) and len(seen) == len(set(seen))        # each box exactly once
    for r in records:
        h, w = images[r["image_id"]]["height"], images[r["image_id"]]["width"]
        assert (r["height"], r["width"]) == (h, w)
        for inst in r["instances"]:
            src = anns[inst["id"]]
            assert inst["category_id"] == src["category_id"] and src["image_id"] == r["image_id"]
            assert inst["mask"].shape == (h, w)                                 # RLE decodes to the image size
            x, y, bw, bh = src["bbox"]
            x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + bw, w), min(y + bh, h)   # clip by hand
            assert inst["bbox"] == pytest.approx([x0, y0, x1 - x0, y1 - y0])
            assert inst["clipped"] == (inst["id"] in box_run["clipped_ids"])
            r0, r1, c0, c1 = box_pixel_bounds([x0, y0, x1, y1], h, w)
            expected = np.zeros((h, w), bool)
            expected[r0:r1, c0:c1] = True                                       # box backend = filled box
            assert np.array_equal(inst["mask"], expected)
            assert inst["area"] == int(expected.sum())
    c = manifest["counts"]
    assert c["images"] == c["images_written"] == len(with_boxes)
    assert c["boxes"] == c["masks_written"] == len(anns)
    assert c["clipped_boxes"] == len(box_run["clipped_ids"]) and c["failed_images"] == 0
    assert sum(s["rows"] for s in manifest["shards"]) == len(records)
    assert manifest["inputs"]["checkpoint_sha256"] is None and manifest["backend"] == "box"
    assert manifest["generation"] == "gen-0001"
    names = sorted(p.name for p in _gen(out).glob("part-*.parquet"))
    rows = box_run["cfg"].rows_per_shard
    assert names == [f"part-{i:05d}.parquet" for i in range(-(-len(with_boxes) // rows))]
    for i, name in enumerate(names):                                            # sorted ids -> shard index
        table, meta = read_shard(locate(_gen(out) / name))
        assert table.column("image_id").to_pylist() == with_boxes[i * rows:(i + 1) * rows]
    assert [s["name"] for s in manifest["shards"]] == [f"gen-0001/{n}" for n in names]
    assert (out / "_errors.jsonl").read_text() == ""
    assert not list(out.rglob(".*tmp*"))                                         # no temp files left behind


def test_export_coco_round_trips_through_pycocotools(box_run, tmp_path):
    dest = tmp_path / "pseudo_coco.json"
    export_coco(box_run["out"], dest)
    coco = COCO(str(dest))
    assert len(coco.getAnnIds()) == len(box_run["data"]["annotations"])
    assert {c["id"] for c in coco.loadCats(coco.getCatIds())} == {c["id"] for c in box_run["data"]["categories"]}
    for ann in coco.loadAnns(coco.getAnnIds()):
        img = coco.imgs[ann["image_id"]]
        m = coco.annToMask(ann)
        assert m.shape == (img["height"], img["width"])
        assert int(mask_utils.area(ann["segmentation"])) == ann["area"] == int(m.sum())


def test_mean_iou_report_matches_direct_computation(box_run, tmp_path):
    source = box_run["source"]
    result = evaluate_output(str(box_run["out"]), str(source.truth), str(source.images), num_overlays=2)
    # independent: pycocotools' own RLE IoU between exported pseudo masks and the truth file
    dest = tmp_path / "pseudo.json"
    export_coco(box_run["out"], dest)
    pred, truth = COCO(str(dest)), COCO(str(source.truth))
    ious, per_cat = [], {}
    for ann in pred.loadAnns(pred.getAnnIds()):
        gt = truth.anns[ann["id"]]
        iou = float(mask_utils.iou([ann["segmentation"]], [truth.annToRLE(gt)], [0])[0, 0])
        ious.append(iou)
        per_cat.setdefault(ann["category_id"], []).append(iou)
    assert result["count"] == len(ious) == len(box_run["data"]["annotations"])
    assert 0.0 < result["mean_iou"] <= 1.0
    assert result["mean_iou"] == pytest.approx(np.mean(ious), abs=1e-9)
    for cid, vals in per_cat.items():
        assert result["per_category"][str(cid)]["mean_iou"] == pytest.approx(np.mean(vals), abs=1e-9)
        assert result["per_category"][str(cid)]["count"] == len(vals)
    written = json.loads((box_run["out"] / "_quality.json").read_text())
    assert written["mean_iou"] == result["mean_iou"]
    assert len(result["overlays"]) == 2
    first = list(iter_records(box_run["out"], decode_masks=False))[0]
    with Image.open(box_run["out"] / "_overlays" / f"{first['image_id']}.png") as im:
        assert im.size == (first["width"], first["height"])


def test_records_become_training_targets(box_run):
    rec = next(iter(iter_records(box_run["out"])))
    t = record_to_target(rec)
    n = len(rec["instances"])
    assert t["masks"].shape == (n, rec["height"], rec["width"]) and t["labels"].shape == (n,)
    x, y, w, h = rec["instances"][0]["bbox"]
    assert t["boxes"][0].tolist() == pytest.approx([x, y, x + w, y + h])


def test_shards_read_back_as_a_ray_dataset(box_run):
    rows = pseudo_mask_dataset(str(box_run["out"])).take_all()
    direct = list(iter_records(box_run["out"], decode_masks=False))
    assert sorted(r["image_id"] for r in rows) == [r["image_id"] for r in direct]
    by_id = {r["image_id"]: r for r in direct}
    for r in rows:
        want = by_id[r["image_id"]]["instances"]
        assert [i["id"] for i in r["instances"]] == [i["id"] for i in want]
        assert [i["segmentation"].decode() for i in r["instances"]] == [i["segmentation"]["counts"] for i in want]


def _gen(out: Path) -> Path:
    """The generation folder the output's manifest names."""
    return out / json.loads((out / "_manifest.json").read_text())["generation"]


def _shard_state(out: Path) -> dict:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(_gen(out).glob("part-*.parquet"))}


def test_rerun_rewrites_only_deleted_or_corrupted_shards(box_run, tmp_path):
    if box_run["source"].name != "synthetic":
        pytest.skip("one resume check is enough (synthetic world: 4 shards)")
    out = tmp_path / "out"
    shutil.copytree(box_run["out"], out)                                        # copy2 keeps mtimes
    before = _shard_state(out)
    assert len(before) == 4
    (_gen(out) / "part-00001.parquet").unlink()
    corrupted = (_gen(out) / "part-00002.parquet")
    corrupted.write_bytes(corrupted.read_bytes()[: corrupted.stat().st_size // 2])
    cfg = _box_config(box_run["cfg"].annotations, box_run["cfg"].images, out, rows_per_shard=3)
    manifest = run_pseudo_masks(cfg)
    after = _shard_state(out)
    assert manifest["counts"]["shards_written"] == 2 and manifest["counts"]["shards_kept"] == 2
    assert set(manifest["recomputed_shards"]) == {"part-00002.parquet"}
    for name in ("part-00000.parquet", "part-00003.parquet"):
        assert after[name] == before[name]                                      # untouched: same mtime, bytes
    for name in ("part-00001.parquet", "part-00002.parquet"):
        new, _ = read_shard(locate(_gen(out) / name))
        old, _ = read_shard(locate(_gen(box_run["out"]) / name))
        assert new.equals(old)                                                  # recomputed to the same rows
    assert manifest["counts"]["masks_written"] == box_run["manifest"]["counts"]["masks_written"]
    again = run_pseudo_masks(cfg)                                               # nothing missing: no work
    assert again["counts"]["shards_written"] == 0 and _shard_state(out) == after
    # a different shard size is another plan: refused, or with overwrite a new generation replaces the set
    with pytest.raises(OutputConflictError, match=r"rows_per_shard: 3 -> 5.*--overwrite"):
        run_pseudo_masks(_box_config(cfg.annotations, cfg.images, out, rows_per_shard=5))
    regrouped = run_pseudo_masks(_box_config(cfg.annotations, cfg.images, out, rows_per_shard=5, overwrite=True))
    assert regrouped["generation"] == "gen-0002" and regrouped["counts"]["shards_written"] == 2
    assert sorted(p.name for p in out.glob("gen-*")) == ["gen-0002"]              # the old generation is gone
    assert sorted(p.name for p in _gen(out).glob("part-*.parquet")) == ["part-00000.parquet", "part-00001.parquet"]
    assert [r["image_id"] for r in iter_records(out, decode_masks=False)] == \
        [r["image_id"] for r in iter_records(box_run["out"], decode_masks=False)]


def test_bad_images_are_reported_not_fatal_and_fatal_when_strict(ray_session, synthetic_source, tmp_path):
    data = load_json(synthetic_source.annotations)
    ids = sorted({a["image_id"] for a in data["annotations"]})
    images = {im["id"]: im for im in data["images"]}
    root = tmp_path / "images"
    shutil.copytree(synthetic_source.images, root)
    truncated, missing = images[ids[1]], images[ids[4]]
    jpeg = (root / truncated["file_name"]).read_bytes()
    (root / truncated["file_name"]).write_bytes(jpeg[:300])                     # corrupt JPEG
    (root / missing["file_name"]).unlink()                                      # missing file
    # object-store style URIs, through pyarrow's FileSystem.from_uri
    cfg = _box_config(synthetic_source.annotations.as_uri(), root.as_uri(), (tmp_path / "out").as_uri(),
                      rows_per_shard=4)
    manifest = run_pseudo_masks(cfg)
    c = manifest["counts"]
    assert c["failed_images"] == 2 and c["images_written"] == len(ids) - 2
    bad_boxes = sum(1 for a in data["annotations"] if a["image_id"] in (truncated["id"], missing["id"]))
    assert c["masks_written"] == len(data["annotations"]) - bad_boxes == c["boxes"] - c["skipped_boxes"]
    lines = [json.loads(x) for x in (tmp_path / "out" / "_errors.jsonl").read_text().splitlines()]
    assert [e["image_id"] for e in lines] == sorted([truncated["id"], missing["id"]])
    reasons = {e["image_id"]: e["reason"] for e in lines}
    assert truncated["file_name"] in reasons[truncated["id"]] and "truncated" in reasons[truncated["id"]].lower()
    assert "no such file" in reasons[missing["id"]].lower()
    assert manifest["errors"] == lines
    assert {r["image_id"] for r in iter_records(tmp_path / "out")} == set(ids) - {truncated["id"], missing["id"]}

    strict = _box_config(synthetic_source.annotations, root, tmp_path / "strict", rows_per_shard=4, strict=True)
    with pytest.raises(PseudoMaskJobError, match=rf"image id ({truncated['id']}|{missing['id']}) failed"):
        run_pseudo_masks(strict)


def test_maskrcnn_job_equals_the_plain_predictor(ray_session, synthetic_source, tiny_checkpoint, tmp_path):
    teacher = TeacherConfig(backend="maskrcnn", arch=TINY_ARCH, min_size=TINY_MIN_SIZE, max_size=TINY_MAX_SIZE)
    cfg = PseudoMaskJobConfig(annotations=str(synthetic_source.annotations), images=str(synthetic_source.images),
                              out=str(tmp_path / "out"), checkpoint=tiny_checkpoint.as_uri(), teacher=teacher,
                              limit=3, rows_per_shard=2, batch_size=1)
    manifest = run_pseudo_masks(cfg)
    import hashlib
    assert manifest["inputs"]["checkpoint_sha256"] == hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest()
    assert manifest["counts"]["images"] == 3 and manifest["counts"]["shards"] == 2
    predictor = BoxConditionedMaskRCNN(load_teacher(tiny_checkpoint, TINY_ARCH, min_size=TINY_MIN_SIZE,
                                                    max_size=TINY_MAX_SIZE))
    records = list(iter_records(tmp_path / "out", decode_masks=False))
    assert len(records) == 3
    for rec in records:
        image = np.asarray(Image.open(io.BytesIO((synthetic_source.images / rec["file_name"]).read_bytes()))
                           .convert("RGB"))
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (i["bbox"] for i in rec["instances"])])
        direct = predictor.predict([image], [boxes])[0]
        for k, inst in enumerate(rec["instances"]):
            expected = mask_utils.encode(np.asfortranarray(direct.masks[k].astype(np.uint8)))
            assert inst["segmentation"]["counts"] == expected["counts"].decode()
            assert inst["score"] == pytest.approx(float(direct.scores[k]), rel=1e-6)
            assert 0.0 < inst["score"] <= 1.0 and inst["teacher_label"] >= 1


def test_seeded_sample_of_the_detection_images_is_recorded(ray_session, synthetic_source, tmp_path):
    """--sample N --seed S: the same N images for the same seed (a different set for another seed),
    in image-id order, recorded in the manifest."""
    from pipelines.pseudo_masks.job import load_detection_input, sample_images

    det = load_detection_input(str(synthetic_source.annotations))
    a, b = sample_images(det.images, 4, 7), sample_images(det.images, 4, 7)
    c = sample_images(det.images, 4, 8)
    ids = [im.image_id for im in a]
    assert ids == [im.image_id for im in b] and ids == sorted(ids) and len(set(ids)) == 4
    assert ids != [im.image_id for im in c]
    with pytest.raises(ValueError, match="sample=99"):
        sample_images(det.images, 99, 0)
    manifest = run_pseudo_masks(_box_config(synthetic_source.annotations, synthetic_source.images, tmp_path / "o",
                                            sample=4, sample_seed=7, rows_per_shard=2))
    written = [r["image_id"] for r in iter_records(tmp_path / "o", decode_masks=False)]
    assert written == ids and manifest["counts"]["images"] == 4
    s = manifest["sample"]
    assert (s["images"], s["seed"], s["of"]) == (4, 7, len(det.images))
    assert s["image_ids_sha256"] == hashlib.sha256(json.dumps(ids).encode()).hexdigest()


def test_empty_pseudo_masks_are_counted_and_reported(ray_session, synthetic_source, tiny_checkpoint, tmp_path):
    """A teacher that leaves masks empty (a random-init Mask R-CNN at a 0.99 threshold) keeps every box
    in the output, and the manifest and summary count the empty ones, as many as the shards hold."""
    from pipelines.pseudo_masks.job import manifest_summary

    teacher = TeacherConfig(backend="maskrcnn", arch=TINY_ARCH, min_size=TINY_MIN_SIZE, max_size=TINY_MAX_SIZE,
                            mask_threshold=0.99)
    cfg = PseudoMaskJobConfig(annotations=str(synthetic_source.annotations), images=str(synthetic_source.images),
                              out=str(tmp_path / "out"), checkpoint=str(tiny_checkpoint), teacher=teacher,
                              limit=3, rows_per_shard=2, batch_size=1)
    manifest = run_pseudo_masks(cfg)
    empty = sum(1 for r in iter_records(tmp_path / "out", decode_masks=False) for i in r["instances"]
                if i["area"] == 0)
    assert empty > 0 and manifest["counts"]["empty_masks"] == empty
    assert manifest["counts"]["masks_written"] == manifest["counts"]["boxes"]
    assert f"(empty: {empty})" in manifest_summary(manifest)


def test_an_interrupted_replan_never_leaves_a_mixed_set(ray_session, synthetic_source, tmp_path):
    """Defect 3: complete a run at 2 rows per shard, re-plan at 3 (--overwrite) and kill it after two
    new shards: readers still get the old complete set, each image once; re-running the re-plan
    switches to the new set. Readers refuse missing, changed and extra shard files."""
    out = tmp_path / "out"
    first = run_pseudo_masks(_box_config(synthetic_source.annotations, synthetic_source.images, out,
                                         rows_per_shard=2))
    ids = [r["image_id"] for r in iter_records(out, decode_masks=False)]

    class Killed(Exception):
        pass

    committed = []

    def kill_after_two(name, n):
        committed.append(name)
        if len(committed) == 2:
            raise Killed

    replan = _box_config(synthetic_source.annotations, synthetic_source.images, out, rows_per_shard=3, overwrite=True)
    with pytest.raises(Killed):
        run_pseudo_masks(replan, on_commit=kill_after_two)
    assert sorted(p.name for p in out.glob("gen-*")) == ["gen-0001", "gen-0002"]
    assert len(list((out / "gen-0002").glob("part-*.parquet"))) == 2
    assert [r["image_id"] for r in iter_records(out, decode_masks=False)] == ids   # the old set, exactly
    done = run_pseudo_masks(replan)  # the same command completes the new generation and switches to it
    assert done["generation"] == "gen-0002" and done["counts"]["shards_kept"] == 2
    assert [r["image_id"] for r in iter_records(out, decode_masks=False)] == ids
    assert len(done["shards"]) == -(-len(ids) // 3) != len(first["shards"])

    gen = out / "gen-0002"
    extra = gen / "part-00099.parquet"
    extra.write_bytes(b"not listed")
    with pytest.raises(ShardSetError, match="part-00099.parquet not in the manifest"):
        list(iter_records(out))
    extra.unlink()
    victim = gen / "part-00001.parquet"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(ShardSetError, match="part-00001.parquet changed"):
        list(iter_records(out))
    victim.unlink()
    with pytest.raises(ShardSetError, match="part-00001.parquet missing"):
        pseudo_mask_dataset(str(out))


def test_failed_images_are_retried_and_an_all_failed_run_exits_non_zero(ray_session, synthetic_source, tmp_path,
                                                                          capsys):
    """Defect 4: a wrong --images makes every image fail: the job exits non-zero; re-running with the
    right folder retries them all (they were cached as 'kept' before)."""
    from jobs.pseudo_masks import main

    args = ["--annotations", str(synthetic_source.annotations), "--out", str(tmp_path / "out"), "--backend", "box",
            "--set", "rows_per_shard=4"]
    (tmp_path / "wrong").mkdir()
    assert main(args + ["--images", str(tmp_path / "wrong")]) == 2
    assert "every one of the 10 images failed" in capsys.readouterr().err
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert manifest["counts"]["failed_images"] == 10 and manifest["counts"]["images_written"] == 0
    assert main(args + ["--images", str(synthetic_source.images)]) == 0
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert manifest["counts"]["failed_images"] == 0 and manifest["counts"]["images_written"] == 10
    assert manifest["counts"]["shards_written"] == 3


def test_altered_shards_are_never_kept(box_run, tmp_path):
    """Issue #28 item 1: a shard rewritten with valid rows and its original footer, and single-bit
    flips anywhere in a shard, are recomputed by the re-run (never kept, never a crash), which
    restores the original bytes."""
    import pyarrow.parquet as pq

    if box_run["source"].name != "synthetic":
        pytest.skip("the synthetic world's 4 shards are enough")
    cfg0 = box_run["cfg"]
    cfg = lambda out: _box_config(cfg0.annotations, cfg0.images, out, rows_per_shard=3)  # noqa: E731
    original = {p.name: p.read_bytes() for p in _gen(box_run["out"]).glob("part-*.parquet")}

    # rows rewritten (a score changed) with the same footer metadata: valid Parquet, valid plan
    out = tmp_path / "rewritten"
    shutil.copytree(box_run["out"], out)
    victim = _gen(out) / "part-00001.parquet"
    table = pq.read_table(victim)
    rows = table.to_pylist()
    rows[0]["instances"][0]["score"] = 0.5
    pq.write_table(type(table).from_pylist(rows, schema=table.schema), victim, compression="zstd")
    manifest = run_pseudo_masks(cfg(out))
    assert manifest["counts"]["shards_written"] == 1 and "part-00001.parquet" in manifest["recomputed_shards"]
    assert "changed since it was written" in manifest["recomputed_shards"]["part-00001.parquet"]
    assert victim.read_bytes() == original["part-00001.parquet"]

    # single-bit flips sampled across the file: each one is recomputed
    data = original["part-00002.parquet"]
    for pos in range(0, len(data), max(1, len(data) // 8)):
        out = tmp_path / f"flip{pos}"
        shutil.copytree(box_run["out"], out)
        flipped = bytearray(data)
        flipped[pos] ^= 1 << (pos % 8)
        (_gen(out) / "part-00002.parquet").write_bytes(bytes(flipped))
        manifest = run_pseudo_masks(cfg(out))
        assert manifest["counts"]["shards_written"] == 1, pos
        assert (_gen(out) / "part-00002.parquet").read_bytes() == data, pos


def test_decode_tasks_grow_with_the_actor_pool_and_the_output_does_not_change(ray_session, synthetic_source,
                                                                               tmp_path):
    """Issue #24 item 5: two decode tasks per teacher actor unless set; a pool of 2 actors (4 decode
    tasks) writes the same shards, row for row, as a pool of 1 (2 decode tasks)."""
    ann, images = synthetic_source.annotations, synthetic_source.images
    assert _box_config(ann, images, tmp_path / "x", pool=ActorPoolConfig(num_actors=3)).pool.decode_task_count == 6
    assert _box_config(ann, images, tmp_path / "x",
                       pool=ActorPoolConfig(num_actors=3, decode_tasks=1)).pool.decode_task_count == 1
    with pytest.raises(ValueError, match="decode_tasks must be positive"):
        _box_config(ann, images, tmp_path / "x", pool=ActorPoolConfig(decode_tasks=0))
    outs = {}
    for n in (1, 2):
        cfg = _box_config(ann, images, tmp_path / f"out{n}", rows_per_shard=3,
                          pool=ActorPoolConfig(num_actors=n, cpus_per_actor=0.25),
                          limit=9)
        run_pseudo_masks(cfg)
        outs[n] = list(iter_records(tmp_path / f"out{n}", decode_masks=False))
    assert len(outs[1]) == 9 and outs[1] == outs[2]
