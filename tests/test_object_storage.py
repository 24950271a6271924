"""Every job against a real S3-compatible endpoint (moto's server on 127.0.0.1), as users run them.

The jobs run as subprocesses (``python -m jobs.X``), each with its own embedded Ray, configured
only through the standard AWS variables. What is checked:

- pseudo masks: the job reads annotations and images from the bucket and writes its shards there;
  its driver is killed twice at different moments and the command re-run: the
  bucket then holds one row per image with boxes, each box once, equal to an uninterrupted run;
- training: shards built into the bucket, 4 steps with Ray Train checkpoints in the bucket
  (``--storage-path``), then the same command continues from the bucket's latest checkpoint;
- evaluation: checkpoint, ground truth and images from the bucket, predictions and report into
  it, with the same metrics as the same evaluation on local files.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures_s3 import S3Endpoint

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "vloss-objects"


def _job(module: str, args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert res.returncode == 0, f"{module} {args}\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    return res


@pytest.fixture(scope="module")
def bucket(s3_endpoint: S3Endpoint, synthetic_world: Path, tmp_path_factory):
    """The synthetic world in a fresh bucket; the env of every job."""
    uri = s3_endpoint.create_bucket(BUCKET)
    s3_endpoint.upload(synthetic_world, f"{uri}/world")
    env = s3_endpoint.job_env(VLOSS_CACHE=str(tmp_path_factory.mktemp("vloss_cache")))
    with pytest.MonkeyPatch.context() as mp:  # this process reads the bucket through the project's code too
        for k, v in s3_endpoint.env.items():
            mp.setenv(k, v)
        mp.setenv("VLOSS_CACHE", env["VLOSS_CACHE"])
        yield uri, env


def _pseudo_args(uri: str, out: str) -> list[str]:
    # the box teacher: exactness on re-runs does not depend on the backend, and at 2 images per shard
    # the 96 images give 48 shards, enough room to kill the driver twice mid-run (the Mask R-CNN
    # teacher read from a bucket runs in tests/test_two_node_cluster.py)
    return ["--annotations", f"{uri}/world/objects365/annotations/train.json",
            "--images", f"{uri}/world/objects365/images/train", "--out", out, "--backend", "box",
            "--set", "rows_per_shard=2"]


def _kill_after(cmd_args: list[str], env: dict[str, str], s3: S3Endpoint, out: str, shards: int,
                log: Path) -> int:
    """Start the pseudo-mask job, SIGKILL its driver once ``out`` holds ``shards`` shards; return that count."""
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "jobs.pseudo_masks", *cmd_args], cwd=ROOT, env=env, stdout=f,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 400
        while time.time() < deadline and proc.poll() is None:
            have = len(s3.list(out, ".parquet"))
            if have >= shards:
                os.kill(proc.pid, signal.SIGKILL)  # the driver only, mid-run
                proc.wait(timeout=30)
                return have
            time.sleep(0.2)
        raise AssertionError(f"the job ended (rc {proc.poll()}) before {shards} shards were written:\n"
                             f"{log.read_text()[-3000:]}")
    finally:
        try:  # what Ray left of that session: its own process group, by our handle
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("object_storage")


@pytest.fixture(scope="module")
def pseudo_runs(bucket, s3_endpoint, work):
    """An uninterrupted run, and a run killed twice then completed by re-running the same command."""
    uri, env = bucket
    reference, target = f"{uri}/pseudo_reference", f"{uri}/pseudo"
    _job("jobs.pseudo_masks", _pseudo_args(uri, reference), env)
    first = _kill_after(_pseudo_args(uri, target), env, s3_endpoint, target, 1, work / "kill1.log")
    second = _kill_after(_pseudo_args(uri, target), env, s3_endpoint, target, first + 8, work / "kill2.log")
    final = _job("jobs.pseudo_masks", _pseudo_args(uri, target), env)
    return reference, target, first, second, final.stdout


def test_pseudo_masks_killed_twice_rerun_is_exact_in_the_bucket(pseudo_runs, synthetic_world, s3_endpoint):
    from pipelines.common.pseudo_mask_format import iter_records

    reference, target, first, second, stdout = pseudo_runs
    total = len(s3_endpoint.list(reference, ".parquet"))
    assert 1 <= first < second < total, (first, second, total)   # killed at two different moments, mid-run
    written, kept = map(int, re.search(r"written (\d+), kept (\d+)", stdout).groups())
    assert kept >= second and written == total - kept, stdout            # committed shards were kept, not redone
    truth = json.loads((synthetic_world / "objects365" / "annotations" / "train.json").read_text())
    boxes_of: dict[int, set[int]] = {}
    for a in truth["annotations"]:
        boxes_of.setdefault(a["image_id"], set()).add(a["id"])
    got = list(iter_records(target, decode_masks=False))
    want = list(iter_records(reference, decode_masks=False))
    assert [r["image_id"] for r in got] == sorted(boxes_of)              # one row per image with boxes
    ids = [i["id"] for r in got for i in r["instances"]]
    assert len(ids) == len(set(ids)) == sum(len(v) for v in boxes_of.values())   # each box once
    for r in got:
        assert {i["id"] for i in r["instances"]} == boxes_of[r["image_id"]]
    assert got == want                                                   # bit-equal to the uninterrupted run
    manifest = json.loads(s3_endpoint.filesystem().open_input_stream(
        f"{target.split('://')[1]}/_manifest.json").read())
    assert manifest["counts"]["images"] == len(boxes_of) and manifest["counts"]["shards"] == total
    print(f"pseudo masks in the bucket: driver killed at {first} and {second} of {total} shards; the re-run "
          f"kept {kept} and wrote {written}; {len(got)} rows, {len(ids)} boxes, equal to the uninterrupted run")


def _train_args(uri: str, run: Path) -> list[str]:
    return ["--data", f"{uri}/world", "--pseudo-masks", f"{uri}/pseudo", "--storage-path", f"{uri}/runs",
            "--out", str(run), "--config", "tiny", "--from-scratch", "--workers", "2",
            "--set", "train.max_steps=4", "--set", "train.checkpoint_every=2", "--set", "train.log_every=1",
            "--set", "train.eval_every=1", "--set", "train.val_images=2", "--set", "train.detection_images=8",
            "--set", "train.panoptic_images=8"]


@pytest.fixture(scope="module")
def trained(bucket, pseudo_runs, work):
    uri, env = bucket
    run = work / "run"
    first = _job("jobs.train", _train_args(uri, run), env)
    first_result = json.loads((run / "result.json").read_text())
    from pipelines.common.remote import fetch
    from vloss.checkpoint import load_training_checkpoint

    first_result["meta"] = load_training_checkpoint(fetch(first_result["checkpoint"]))[1]  # pruned later
    second = _job("jobs.train", _train_args(uri, run), env)
    return uri, run, first, first_result, second


def test_training_checkpoints_in_the_bucket_and_resumes_from_it(trained, s3_endpoint):
    from pipelines.common.remote import fetch
    from vloss.checkpoint import load_training_checkpoint

    uri, run, first, first_result, second = trained
    store = f"{uri}/runs/{run.name}"
    assert first_result["checkpoint"].startswith(f"{store}/ray_train/checkpoint_")
    assert s3_endpoint.list(f"{store}/data/shards", ".parquet")           # shards were built into the bucket
    assert s3_endpoint.list(f"{store}/best_checkpoint") == ["meta.json", "state.pt"]
    assert not (run / "ray_train").exists() and not (run / "data").exists()   # nothing of the storage locally
    assert first_result["meta"]["global_step"] == 4
    assert "continuing this run from its latest checkpoint" in second.stdout
    result = json.loads((run / "result.json").read_text())
    state, meta = load_training_checkpoint(fetch(result["checkpoint"]))
    assert meta["global_step"] == 8 and state["optimizer_steps"] == 8
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))                                    # written by the driver, no gap, no repeat
    assert result["best_checkpoint"] == f"{store}/best_checkpoint"


def test_evaluation_from_the_bucket_equals_the_local_evaluation(trained, bucket, s3_endpoint, synthetic_world,
                                                                tmp_path):
    from pipelines.common.remote import fetch

    uri, run, _, _, _ = trained
    result = json.loads((run / "result.json").read_text())
    ade = "world/ade20k_panoptic"
    common = ["--task", "ade20k_panoptic", "--set", "limit=4", "--set", "size=128"]
    _job("jobs.evaluate", common + ["--checkpoint", result["checkpoint"],
                                    "--gt-json", f"{uri}/{ade}/ade20k_panoptic_val.json",
                                    "--images", f"{uri}/{ade}/images/validation",
                                    "--gt-dir", f"{uri}/{ade}/ade20k_panoptic_val", "--out", f"{uri}/evals/ade"],
         bucket[1])
    files = s3_endpoint.list(f"{uri}/evals/ade")
    assert {"metrics.json", "report.md", "config.json", "predictions/manifest.json",
            "predictions/panoptic.json"} <= set(files)
    assert len([f for f in files if f.startswith("predictions/panoptic/")]) == 4
    remote = json.loads(Path(fetch(f"{uri}/evals/ade/metrics.json")).read_text())
    manifest = json.loads(Path(fetch(f"{uri}/evals/ade/predictions/manifest.json")).read_text())
    assert manifest["inputs"]["images"] == f"{uri}/{ade}/images/validation"
    assert manifest["inputs"]["checkpoint"] == result["checkpoint"]
    local_ckpt = fetch(result["checkpoint"])
    local = tmp_path / "eval_local"
    _job("jobs.evaluate", common + ["--checkpoint", local_ckpt, "--data", str(synthetic_world), "--out", str(local)],
         bucket[1])
    local_metrics = json.loads((local / "metrics.json").read_text())
    assert remote["metrics"]["All"]["n"] > 0
    assert remote["metrics"] == local_metrics["metrics"]                 # every class's PQ, SQ, RQ
    assert remote["checkpoint"]["sha256"] == local_metrics["checkpoint"]["sha256"]
