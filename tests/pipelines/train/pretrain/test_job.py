"""The pretraining job end to end on the embedded Ray: it learns, resumes exactly, and its output is claimed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from jobs.pretrain import main as pretrain_main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small_corpus(synthetic_world: Path, tmp_path_factory) -> tuple[str, str]:
    """The first 48 images of the world's pretraining corpus, as a COCO captions file of their own."""
    data = json.loads((synthetic_world / "pretrain_corpus/annotations/captions.json").read_text())
    keep = {im["id"] for im in data["images"][:48]}
    data["images"] = [im for im in data["images"] if im["id"] in keep]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    path = tmp_path_factory.mktemp("corpus") / "captions.json"
    path.write_text(json.dumps(data))
    return str(path), str(synthetic_world / "pretrain_corpus/images")


def _args(corpus: tuple[str, str], out: Path, *sets: str, classes: str | None = None) -> list[str]:
    base = ["pretrain.image_size=64", "pretrain.batch_size=16", "pretrain.epochs=8", "pretrain.warmup_steps=4",
            "pretrain.log_every=1", "pretrain.checkpoint_every=3"]
    return ["--captions", corpus[0], "--images", corpus[1], "--out", str(out), "--workers", "2",
            *(["--classes", classes] if classes else []), *[x for s in base + list(sets) for x in ("--set", s)]]


@pytest.fixture(scope="module")
def class_file(synthetic_world: Path, tmp_path_factory) -> str:
    """The world's thing and stuff names, one per line (the label objective's classes)."""
    world = json.loads((synthetic_world / "world.json").read_text())
    names = world["vocabularies"]["lvis"]["things"] + world["vocabularies"]["ade20k_panoptic"]["stuff"]
    path = tmp_path_factory.mktemp("classes") / "classes.txt"
    path.write_text("\n".join(names) + "\n")
    return str(path)


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_pretraining_learns_and_writes_loadable_towers(small_corpus, tmp_path, ray_session, capsys):
    out = tmp_path / "towers"
    assert pretrain_main(_args(small_corpus, out)) == 0
    rows = _rows(out)
    assert [r["step"] for r in rows] == list(range(1, 25))  # 48 images / 16 = 3 steps x 8 epochs, each once
    first, last = rows[0]["contrastive/total"], sum(r["contrastive/total"] for r in rows[-3:]) / 3
    # chance level of a 16-way symmetric InfoNCE is ln 16 = 2.77; 24 steps over 48 pairs must fall well below
    assert first > 2.3 and last < 0.75 * first, (first, last)
    record = json.loads((out / "towers.json").read_text())
    assert record["steps"] == 24 and (out / "loss.png").stat().st_size > 1000
    from vloss.config import preset
    from vloss.model import build_model

    cfg = preset("tiny").model
    cfg.backbone.weights, cfg.text.weights = str(out / "backbone.bin"), str(out / "text.bin")
    build_model(cfg)  # the user's path, with its shape checks
    capsys.readouterr()
    assert pretrain_main(_args(small_corpus, out)) == 0  # the same command again: nothing to do
    assert "this run is complete" in capsys.readouterr().out


def test_a_resumed_run_equals_an_uninterrupted_one(small_corpus, class_file, tmp_path, ray_session, capsys):
    stopped, straight = tmp_path / "stopped", tmp_path / "straight"
    run = dict(classes=class_file)  # with the label objective: both losses over two DDP workers
    assert pretrain_main(_args(small_corpus, stopped, "pretrain.epochs=3", "pretrain.max_steps=4", **run)) == 0
    assert json.loads((stopped / "towers.json").read_text())["steps"] == 4
    # a longer run-length continues the same run from its last checkpoint, at step 4 (max_steps is not its identity)
    assert pretrain_main(_args(small_corpus, stopped, "pretrain.epochs=3", **run)) == 0
    assert pretrain_main(_args(small_corpus, straight, "pretrain.epochs=3", **run)) == 0
    assert [r["step"] for r in _rows(stopped)] == list(range(1, 10))  # the steps after 3 logged once
    assert all(r["labels/total"] > 0 for r in _rows(stopped))
    for name in ("backbone.bin", "text.bin"):
        a = torch.load(stopped / name, weights_only=True)
        b = torch.load(straight / name, weights_only=True)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.allclose(a[key], b[key], atol=1e-6, rtol=0), (name, key)
    # another plan on the same --out is refused in one line, and --overwrite replaces it
    capsys.readouterr()
    assert pretrain_main(_args(small_corpus, straight, "pretrain.epochs=3", "pretrain.lr=1e-3", **run)) == 2
    assert "holds a tower pretraining run of another plan" in capsys.readouterr().err


def test_settings_are_checked_before_any_work(small_corpus, tmp_path, capsys):
    with pytest.raises(SystemExit):
        pretrain_main(_args(small_corpus, tmp_path / "x", "pretrain.image_size=70"))
    assert "multiple of 32" in capsys.readouterr().err
    assert pretrain_main(_args(small_corpus, tmp_path / "y", "pretrain.batch_size=15")) == 2
    assert "does not divide over 2 workers" in capsys.readouterr().err


def test_sigterm_checkpoints_the_step_in_flight_and_the_rerun_continues(small_corpus, tmp_path):
    """Issue #28 item 7 for the pretraining job: SIGTERM makes the workers finish their step and
    checkpoint it (none is scheduled before the end, so the only checkpoint is the stop's), the driver
    exits 143 with one line naming the step, and the same command continues from it with every step
    logged once and the towers written after the last."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from pipelines.train.pretrain.worker import load_state

    root = Path(__file__).resolve().parents[4]
    out = tmp_path / "towers"
    cmd = [sys.executable, "-m", "jobs.pretrain", *_args(small_corpus, out, "pretrain.epochs=30",
                                                          "pretrain.checkpoint_every=1000")]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # its own embedded Ray, as a user runs it
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if (out / "metrics.jsonl").is_file() and len((out / "metrics.jsonl").read_text().splitlines()) >= 4:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    try:
        stdout, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143, (proc.returncode, err[-3000:])
    assert err.count("stopped by SIGTERM") == 1 and "Traceback" not in err, err[-3000:]
    rows = _rows(out)
    assert [r["step"] for r in rows if r.get("stopped")] == [rows[-1]["step"]], rows
    saved = [p for p in (out / "ray_train").iterdir() if p.name.startswith("checkpoint_") and p.is_dir()]
    assert len(saved) == 1, saved
    step = int(load_state(str(saved[0]))["step"])
    assert 4 <= step == rows[-1]["step"] < 90 and f"after step {step} of 90" in err, (step, err[-2000:])
    assert not (out / "towers.json").exists()  # no towers from a stopped run

    second = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=env, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert [r["step"] for r in _rows(out)] == list(range(1, 91))
    assert json.loads((out / "towers.json").read_text())["steps"] == 90
