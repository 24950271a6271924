"""A real two-node Ray cluster on this machine, whose nodes share nothing but object storage.

The head (``ray start --head``) and a second node (``ray start --address``, its own
``--temp-dir``) each offer 2 logical CPUs. Every job goes in with ``ray job submit
--working-dir . --runtime-env-json`` (the AWS variables of the S3 endpoint), as the README
shows, and reads and writes ``s3://`` only, apart from the training run directory that the
driver itself writes. Checked:

- the pseudo-mask job, with a teacher actor per node, writes its shards into the bucket and
  reports its mask quality (the box teacher: the Mask R-CNN teacher read through a URI is
  tested in tests/pipelines/pseudo_masks/test_job.py);
- a local ``--images`` path on this cluster is refused before any work (tasks on the other node
  could not read it);
- training places one Ray Train worker on each node (``cluster.cpus_per_worker=1.5`` leaves room
  for one worker per node) and keeps its checkpoints in the bucket; the second node is then
  killed mid-run: Ray Train's retries find no room, and the job stops with an error that says how
  to continue; the same run continued elastic (``--workers 1:2``) trains on the head alone while
  the node is gone, grows to two workers when it is back, and ends with the full number of
  optimizer steps (shards, checkpoints and the best checkpoint in the bucket, metrics written by
  the driver); the evaluation job then scores the
  checkpoint from the bucket into the bucket, with the metrics of the same evaluation on local files.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures_cluster import RAY, LocalCluster
from tests.fixtures_s3 import S3Endpoint

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "vloss-cluster"
HEAD, SECOND = {"vloss_head": 1}, {"vloss_second": 1}


@pytest.fixture(scope="module")
def cluster(s3_endpoint: S3Endpoint, synthetic_world: Path, tmp_path_factory):
    uri = s3_endpoint.create_bucket(BUCKET)
    s3_endpoint.upload(synthetic_world, f"{uri}/world")
    c = LocalCluster.create(tmp_path_factory.mktemp("two_nodes"))
    try:
        with pytest.MonkeyPatch.context() as mp:  # this process reads the bucket through the project's code too
            for k, v in s3_endpoint.env.items():
                mp.setenv(k, v)
            mp.setenv("VLOSS_CACHE", str(tmp_path_factory.mktemp("vloss_cache")))
            c.start_head(2, HEAD)
            c.add_node("second", 2, SECOND)
            yield c, uri
    finally:
        c.shutdown()


def _submit(c: LocalCluster, s3: S3Endpoint, args: list[str], tmp: Path, check: bool = True):
    res = c.submit(["-m", *args], ROOT, {**s3.env, "VLOSS_CACHE": str(tmp / "vloss_cache")})
    if check:
        assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-3000:]
        assert "succeeded" in res.stdout + res.stderr
    return res


def test_pseudo_masks_job_on_two_nodes_into_the_bucket(cluster, s3_endpoint, tmp_path):
    c, uri = cluster
    out = f"{uri}/pseudo"
    res = _submit(c, s3_endpoint, [
        "jobs.pseudo_masks", "--annotations", f"{uri}/world/objects365/annotations/train.json",
        "--images", f"{uri}/world/objects365/images/train", "--out", out, "--backend", "box",
        "--set", "limit=16", "--set", "rows_per_shard=4", "--num-actors", "2",
        "--eval-truth", f"{uri}/world/objects365/truth/train_masks.json"], tmp_path)
    assert "Started a local Ray instance" not in res.stdout                  # joined the cluster
    assert s3_endpoint.list(out, ".parquet") == [f"gen-0001/part-0000{k}.parquet" for k in range(4)]
    manifest = json.loads(s3_endpoint.filesystem().open_input_stream(f"{BUCKET}/pseudo/_manifest.json").read())
    assert manifest["counts"]["images"] == 16 and manifest["counts"]["masks_written"] == manifest["counts"]["boxes"]
    assert re.search(r'"mean_iou": 0\.\d+', res.stdout)
    assert "mean mask IoU" in res.stdout


def test_local_paths_are_refused_on_two_nodes(cluster, s3_endpoint, synthetic_world, tmp_path):
    c, uri = cluster
    res = _submit(c, s3_endpoint, [
        "jobs.pseudo_masks", "--annotations", f"{uri}/world/objects365/annotations/train.json",
        "--images", str(synthetic_world / "objects365" / "images" / "train"), "--out", f"{uri}/refused",
        "--backend", "box"], tmp_path, check=False)
    assert res.returncode != 0
    text = res.stdout + res.stderr
    assert "Ray cluster of 2 nodes" in text and "--images" in text and "shared_fs=true" in text
    assert not s3_endpoint.list(f"{uri}/refused", ".parquet")


def _train_args(uri: str, run: Path, *sets: str) -> list[str]:
    args = ["jobs.train", "--data", f"{uri}/world", "--box-masks", "--storage-path", f"{uri}/runs",
            "--out", str(run), "--config", "tiny", "--from-scratch", "--workers", "2",
            "--set", "cluster.cpus_per_worker=1.5", "--set", "train.checkpoint_every=2", "--set", "train.eval_every=0",
            "--set", "train.detection_images=8", "--set", "train.panoptic_images=8"]
    for kv in sets:
        args += ["--set", kv]
    return args


def _train_worker_nodes(c: LocalCluster) -> list[str]:
    res = subprocess.run([RAY, "list", "actors", "--address", f"127.0.0.1:{c.gcs_port}", "--detail", "--format",
                          "json", "--limit", "1000"], env=c.env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return [a["node_id"] for a in json.loads(res.stdout) if "TrainWorker" in a.get("class_name", "")]


def _with_workers(args: list[str], workers: str) -> list[str]:
    i = args.index("--workers")
    return args[:i + 1] + [workers] + args[i + 2:]


def _metric_rows(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_two_node_training_loses_a_node_stops_clearly_continues_elastic_and_evaluates(cluster, s3_endpoint,
                                                                                      synthetic_world, ray_session,
                                                                                      tmp_path):
    """A fixed group of 2: Ray Train retries placing the workers for about ``cluster.resource_wait_s``
    (here 10 s, each try waiting 10 s), then the job stops with what to do. The same run is then
    continued elastic (``--workers 1:2``) while the node is still gone: it trains on the head's
    worker alone; the node comes back and the run grows to 2 workers; it ends with the schedule's
    12 epochs x 2 steps = 24 optimizer steps, every dense step on its full global batch."""
    from pipelines.common.remote import fetch
    from pipelines.evaluate.config import EvalJobConfig
    from pipelines.evaluate.job import run_evaluation
    from pipelines.train.schedule import ScheduleConfig, StepSchedule
    from vloss.checkpoint import load_training_checkpoint

    c, uri = cluster
    run = tmp_path / "run"
    args = _train_args(uri, run, "train.epochs=12", "cluster.resource_wait_s=10", "train.eval_every=4",
                       "train.val_images=2", "train.record_batches=true")
    env_vars = {**s3_endpoint.env, "VLOSS_CACHE": str(tmp_path / "cache"),
                "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "10"}

    def submit(job_args: list[str]) -> subprocess.Popen:
        return subprocess.Popen([RAY, "job", "submit", "--address", c.address, "--working-dir", str(ROOT),
                                 "--runtime-env-json", json.dumps({"env_vars": env_vars}), "--", sys.executable,
                                 "-m", *job_args], env=c.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)

    first = submit(args)
    ckpts = f"{uri}/runs/run/ray_train"
    deadline = time.time() + 400
    while time.time() < deadline and first.poll() is None and not s3_endpoint.list(ckpts, "meta.json"):
        time.sleep(0.5)
    assert first.poll() is None, "the first run ended before its first checkpoint: " + first.stdout.read()[-4000:]
    names = {n["node_id"]: ("head" if "vloss_head" in n["resources_total"] else "second") for n in c.alive_nodes()}
    assert {names.get(n) for n in _train_worker_nodes(c)} == {"head", "second"}   # one worker on each node
    t_kill = time.time()
    next(n for n in c.nodes if n.name == "second").stop(signal.SIGKILL)   # the node goes away mid-run
    out, _ = first.communicate(timeout=600)
    stopped_after = time.time() - t_kill
    assert first.returncode != 0, "the first run did not stop when the node went away: " + out[-4000:]
    assert "training stopped" in out and "re-run the same command" in out and "--workers MIN:MAX" in out, \
        "the first run's stop did not say what to do: " + out[-4000:]
    saved = [load_training_checkpoint(fetch(f"{ckpts}/{k.rsplit('/', 1)[0]}"))[1]["global_step"]
             for k in s3_endpoint.list(ckpts, "meta.json")]
    assert saved and max(saved) < 24, f"checkpointed steps {saved}"

    # the same run, elastic, with the node still gone: it continues on the one worker the head holds
    rows_before = len(_metric_rows(run))
    second = submit(_with_workers(args, "1:2") + ["--set", "cluster.elastic_resize_s=2"])
    deadline = time.time() + 400
    while time.time() < deadline and second.poll() is None and not any(
            r.get("workers") == 1 for r in _metric_rows(run)[rows_before:]):
        time.sleep(0.5)
    assert second.poll() is None, "the elastic run ended before a step on one worker: " + second.stdout.read()[-4000:]
    c.add_node("second", 2, SECOND)                                      # the node is back: the run grows
    out, _ = second.communicate(timeout=600)
    assert second.returncode == 0, "the elastic run failed: " + out[-5000:]
    assert "continuing this run from its latest checkpoint" in out
    rows = _metric_rows(run)[rows_before:]
    workers = [r["workers"] for r in rows]
    assert 1 in workers and 2 in workers and workers.index(2) > workers.index(1), f"workers by logged step {workers}"
    result = json.loads((run / "result.json").read_text())
    assert result["checkpoint"].startswith(f"{ckpts}/checkpoint_")
    state, meta = load_training_checkpoint(fetch(result["checkpoint"]))
    assert state["optimizer_steps"] == meta["global_step"] == 24
    config = json.loads((run / "config.json").read_text())
    assert StepSchedule(ScheduleConfig.from_dict(config["schedule"])).total_steps == 24
    # the batches the plan gives: every step trained (the last record of a step redone after a
    # restart counts), each dense step on the global batch, each dense pass on distinct images
    batches = {b["step"]: b for r in _metric_rows(run) for b in r.get("batches", [])}
    assert sorted(batches) == list(range(1, 25))
    dense = config["job"]["train"]["dense_batch_size"]
    for task in ("detection", "panoptic"):
        steps = [[i for rank in b["image_ids"] for i in rank] for _, b in sorted(batches.items()) if b["task"] == task]
        assert steps and all(len(ids) == dense for ids in steps)
        per_pass = len(steps) // 12
        for p in range(0, len(steps), per_pass):
            ids = [i for ids in steps[p:p + per_pass] for i in ids]
            assert len(ids) == len(set(ids))
    store = f"{uri}/runs/run"
    assert s3_endpoint.list(f"{store}/data/shards", ".parquet")           # shards built into the bucket
    assert result["best_checkpoint"] == f"{store}/best_checkpoint"
    assert s3_endpoint.list(f"{store}/best_checkpoint") == ["meta.json", "state.pt"]
    assert not (run / "ray_train").exists() and not (run / "data").exists()   # nothing of the storage locally
    print(f"node removed after step {max(saved)} was checkpointed; the job stopped {stopped_after:.0f} s later; "
          f"the elastic re-run trained on workers {sorted(set(workers))} to step 24")

    ade = f"{uri}/world/ade20k_panoptic"
    res = _submit(c, s3_endpoint, [
        "jobs.evaluate", "--task", "ade20k_panoptic", "--checkpoint", result["checkpoint"],
        "--gt-json", f"{ade}/ade20k_panoptic_val.json", "--images", f"{ade}/images/validation",
        "--gt-dir", f"{ade}/ade20k_panoptic_val", "--out", f"{uri}/evals/ade", "--set", "limit=4",
        "--set", "size=128"], tmp_path)
    assert f"report:  {uri}/evals/ade/report.md" in res.stdout
    files = s3_endpoint.list(f"{uri}/evals/ade")
    assert {"metrics.json", "report.md", "config.json", "predictions/manifest.json",
            "predictions/panoptic.json"} <= set(files)
    assert len([f for f in files if f.startswith("predictions/panoptic/")]) == 4
    remote = json.loads(Path(fetch(f"{uri}/evals/ade/metrics.json")).read_text())
    manifest = json.loads(Path(fetch(f"{uri}/evals/ade/predictions/manifest.json")).read_text())
    assert manifest["inputs"]["images"] == f"{ade}/images/validation"
    assert manifest["inputs"]["checkpoint"] == result["checkpoint"]
    run_evaluation(EvalJobConfig(task="ade20k_panoptic", checkpoint=fetch(result["checkpoint"]),
                                 data=str(synthetic_world), out=str(tmp_path / "eval_local"), limit=4, size=128))
    local = json.loads((tmp_path / "eval_local" / "metrics.json").read_text())
    assert remote["metrics"]["All"]["n"] > 0
    assert remote["metrics"] == local["metrics"]                           # every class's PQ, SQ, RQ
    assert remote["checkpoint"]["sha256"] == local["checkpoint"]["sha256"]
