"""The batch-prediction Ray job: the same segments as ``python -m vloss predict``, exact shard sets, resumable.

The reference is the CLI run on the same images (batch size 1 on both sides, so padding is the
same): its COCO-panoptic PNG gives each segment's pixels; the job's RLEs are decoded with pycocotools.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.common.actor_pool import ActorPoolConfig
from pipelines.common.output_set import OutputConflictError
from pipelines.predict.config import PredictJobConfig
from pipelines.predict.job import PredictJobError, read_predictions, run_prediction
from vloss.data.masks import rgb2id
from vloss.inference.predict_cli import main as cli_main

pytestmark = pytest.mark.slow

VOCAB = "thing: person\nthing: car\nstuff: sky\nstuff: grass\n"


@pytest.fixture()
def folder(tmp_path: Path, shared_data: Path) -> Path:
    """Two COCO photos, a resized copy in a sub-folder and a corrupt JPEG (5 sorted paths, 4 good)."""
    d = tmp_path / "images"
    (d / "sub").mkdir(parents=True)
    photos = sorted((shared_data / "coco-panoptic-sample/input_images").glob("*.jpg"))
    for p in photos:
        shutil.copy(p, d / p.name)
    Image.open(photos[0]).convert("RGB").resize((160, 120)).save(d / "sub" / "a_small.png")
    Image.open(photos[1]).convert("RGB").resize((100, 140)).save(d / "sub" / "b_tall.jpg")
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    return d


def _cfg(folder: Path, tmp_path: Path, checkpoint: Path, **kw) -> PredictJobConfig:
    vocab = tmp_path / "vocab.txt"
    if not vocab.exists():
        vocab.write_text(VOCAB)
    base = dict(images=str(folder), vocab_file=str(vocab), checkpoint=str(checkpoint), out=str(tmp_path / "out"),
                threshold=0.0, rows_per_shard=2, batch_size=1, overlays=True,
                pool=ActorPoolConfig(ray_num_cpus=2))
    base.update(kw)
    return PredictJobConfig(**base)


def _rows(out: Path) -> dict[str, dict]:
    return {Path(r["image"]).name: r for r in read_predictions(str(out))}


def test_job_equals_the_cli_and_resumes(ray_session, folder: Path, tmp_path: Path, tiny_checkpoint_dir: Path):
    from pycocotools import mask as mask_utils

    cfg = _cfg(folder, tmp_path, tiny_checkpoint_dir)
    m = run_prediction(cfg)
    assert m["counts"] == {"images": 5, "predicted": 4, "failed": 1, "shards": 3, "shards_written": 3,
                           "shards_kept": 0}
    assert [Path(e["image"]).name for e in m["errors"]] == ["broken.jpg"]
    rows = _rows(tmp_path / "out")
    assert sorted(rows) == ["000000142238.jpg", "000000439180.jpg", "a_small.png", "b_tall.jpg"]

    # the CLI on the same images (batch size 1 on both sides: the same padding)
    cli_out = tmp_path / "cli"
    assert cli_main([r["image"] for r in rows.values()] + [
        "--checkpoint", str(tiny_checkpoint_dir), "--vocab-file", cfg.vocab_file, "--out", str(cli_out),
        "--threshold", "0", "--batch-size", "1"]) == 0
    for name, row in rows.items():
        stem = Path(name).stem
        cli = json.loads((cli_out / f"{stem}.json").read_text())
        ids = rgb2id(np.asarray(Image.open(cli_out / f"{stem}.panoptic.png").convert("RGB")))  # [H, W]
        assert (row["height"], row["width"]) == (cli["height"], cli["width"])
        assert [(s["name"], s["area"], s["isthing"]) for s in row["segments"]] == \
               [(s["name"], s["area"], bool(s["isthing"])) for s in cli["segments_info"]]
        assert [s["score"] for s in row["segments"]] == pytest.approx([s["score"] for s in cli["segments_info"]],
                                                                      abs=1e-6)
        for s, c in zip(row["segments"], cli["segments_info"]):
            assert np.array_equal(mask_utils.decode(s["segmentation"]).astype(bool), ids == c["id"]), name

    overlays = sorted(p.name for p in (tmp_path / "out" / "overlays").iterdir())
    assert len(overlays) == 4 and all(p.endswith(".png") for p in overlays)

    # delete one good shard: the rerun writes it (and retries the shard with the failed image), keeps the other
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    gen = tmp_path / "out" / m["generation"]
    good = [s for s in manifest["shards"] if s["failed"] == 0]
    (tmp_path / "out" / good[0]["name"]).unlink()
    m2 = run_prediction(cfg)
    assert m2["counts"]["shards_written"] == 2 and m2["counts"]["shards_kept"] == 1
    assert _rows(tmp_path / "out") == rows
    # (besides each shard's hidden checksum, pipelines.common.shard_writer)
    assert sorted(p.name for p in gen.iterdir() if not p.name.startswith(".")) == \
        sorted(Path(s["name"]).name for s in manifest["shards"])
    # the same vocabulary as names (--things/--stuff) is the same plan: everything is kept
    m3 = run_prediction(_cfg(folder, tmp_path, tiny_checkpoint_dir, vocab_file=None, things=("person", "car"),
                             stuff=("sky", "grass")))
    assert m3["counts"]["shards_written"] == 1 and m3["counts"]["shards_kept"] == 2  # the failed image's is retried
    assert _rows(tmp_path / "out") == rows


def test_another_plan_is_refused_unless_overwrite(ray_session, folder: Path, tmp_path: Path,
                                                  tiny_checkpoint_dir: Path):
    (folder / "broken.jpg").unlink()
    cfg = _cfg(folder, tmp_path, tiny_checkpoint_dir, limit=2, overlays=False)
    run_prediction(cfg)
    other = tmp_path / "other.txt"
    other.write_text("thing: dog\n")
    with pytest.raises(OutputConflictError):
        run_prediction(_cfg(folder, tmp_path, tiny_checkpoint_dir, limit=2, overlays=False, vocab_file=str(other)))
    m = run_prediction(_cfg(folder, tmp_path, tiny_checkpoint_dir, limit=2, overlays=False, vocab_file=str(other),
                            overwrite=True))
    assert m["vocabulary"]["names"] == ["dog"]
    assert {s["name"] for r in _rows(tmp_path / "out").values() for s in r["segments"]} <= {"dog"}


def test_nothing_predictable_fails_loudly(ray_session, tmp_path: Path, tiny_checkpoint_dir: Path):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "x.jpg").write_bytes(b"nope")
    with pytest.raises(PredictJobError, match="every one of the 1 images failed"):
        run_prediction(_cfg(d, tmp_path, tiny_checkpoint_dir))
    with pytest.raises(FileNotFoundError, match="no images"):
        run_prediction(_cfg(tmp_path / "vocab_dir_does_not_matter", tmp_path, tiny_checkpoint_dir,
                            images=str(tmp_path / "empty*.jpg")))
