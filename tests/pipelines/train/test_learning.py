"""Learning through the real Ray Train path: ``tiny`` on the small synthetic world reaches a golden PQ.

The overfit test (``tests/vloss/test_overfit.py``) proves the machinery can memorise three
images; this one proves that the distributed training job *generalises*: two Ray Train workers
(DDP; seeded shuffled passes read by Ray Data, a fresh seeded large-scale jitter every pass) train
``tiny`` for a fixed number of steps on the small world's COCO-style panoptic train split, and the run's own validation
(:class:`pipelines.train.validation.PanopticValidator`, the evaluation's real thresholds 0.8 /
0.8) scores the COCO-style **val** split, whose images training never sees.

The run starts, as the paper's do, from pretrained towers: the image and text towers pretrained
CLIP-style by ``jobs/pretrain.py`` on the world's caption corpus (the ``pretrained_towers``
fixture, loaded through ``model.backbone.weights`` / ``model.text.weights``).

The recipe is the ``panoptic`` schedule (Table 3's Mask2Former row on ``tiny``): every step is a
panoptic step, so the val PQ rises within a CI budget (about 2 minutes here). The full STT recipe
learns the same way but spends two thirds of its steps on detection and captions and needs about
three times the steps (``docs/ABLATIONS.md`` compares the recipes).

Golden number: ``GOLDEN_PQ`` from calibration runs on 2 CPU cores (see the constant); a change
that breaks learning (a loss sign, a matcher, a data transform, a label shift) leaves the PQ near
the untrained model's, which this test also measures (its first validation), and turns CI red.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.train.config import ClusterConfig
from pipelines.train.job import run_training
from vloss.config import resolve

pytestmark = pytest.mark.slow

EPOCHS = 50  # 6 panoptic steps of 8 images per epoch on the small world: 300 optimizer steps
SETTINGS = ["train.schedule=panoptic", "train.caption_ratio=0", f"train.epochs={EPOCHS}", "train.eval_every=5",
            "train.log_every=30", "train.checkpoint_every=1000", "train.checkpoint_sub_epochs=false"]
# COCO-style val PQ of the best validation, calibration runs of this recipe (2 CPU cores, 2 workers) with
# seeds 0, 1, 2. Re-calibrated 2026-12-05 when the run started from pretrained towers (issue #22; the
# fixture's 3-pass towers): 0.2310 / 0.1872 / 0.1918 (first validation, after 30 steps: 0.000 each).
# From towers trained from scratch (2026-12-04, seeded shuffled input): 0.2410 / 0.2440 / 0.2054; before
# that (2026-11-27, file-order passes, unseeded augmentation): 0.2336 / 0.2343 / 0.2153.
# Golden = the mean; tolerance = 3 standard deviations of the runs (0.0241), which stays far above
# the untrained model's PQ (0.0).
GOLDEN_RUNS = (0.2310, 0.1872, 0.1918)
GOLDEN_PQ = round(sum(GOLDEN_RUNS) / len(GOLDEN_RUNS), 4)
TOLERANCE = 0.072
UNTRAINED_MAX = 0.05


def learning_run(shards: Path, run_dir: Path, towers: dict[str, str], seed: int = 0) -> dict:
    """Train the test's recipe with ``seed`` from ``towers``; returns {first, best, final} validation PQ and steps."""
    weights = [f"model.backbone.weights={towers['backbone']}", f"model.text.weights={towers['text']}"]
    job = resolve("tiny", SETTINGS + [f"seed={seed}", f"input.seed={seed}"] + weights)
    run_training(job, str(shards), str(run_dir), ClusterConfig(workers=2))
    result = json.loads((run_dir / "result.json").read_text())
    vals = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    vals = [m for m in vals if "val/pq" in m]
    return {"first": vals[0]["val/pq"], "best": result["best"]["val/pq"], "final": vals[-1]["val/pq"],
            "steps": result["metrics"]["optimizer_steps"], "curve": [(m["step"], round(m["val/pq"], 4)) for m in vals]}


def test_tiny_learns_to_segment_unseen_val_images(train_shards, pretrained_towers, tmp_path):
    r = learning_run(train_shards, tmp_path / "run", pretrained_towers)
    assert r["steps"] == 6 * EPOCHS
    # the golden end, and a start (first validation, after 30 steps) that has not learned yet
    assert r["best"] == pytest.approx(GOLDEN_PQ, abs=TOLERANCE), r["curve"]
    assert r["first"] < UNTRAINED_MAX, r["curve"]
