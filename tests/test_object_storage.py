"""Every job against a real S3-compatible endpoint (moto's server on 127.0.0.1), as users run them.

The jobs run as subprocesses (``python -m jobs.X``), each with its own embedded Ray, configured
only through the standard AWS variables. What is checked:

- pseudo masks: the job reads annotations and images from the bucket and writes its shards there;
  its driver is killed twice at different moments and the command re-run: the
  bucket then holds one row per image with boxes, each box once, equal to an uninterrupted run;

Training with its shards and Ray Train checkpoints in a bucket, resumed from it, and the
evaluation from and into a bucket run on a two-node cluster in tests/test_two_node_cluster.py
(the same endpoint fixture), where the nodes share nothing else.
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
