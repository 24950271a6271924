"""Issue #13 drill: the training *driver* is killed mid-run; re-running the same command continues.

``python -m jobs.train`` runs as a user would run it (its own embedded Ray), is SIGKILLed once its
first checkpoint exists, and the identical command is run again with ``--resume auto`` (the
default). The re-run must say it continues, start at the step after that checkpoint (or later,
if a later one was written before the kill), and end with the schedule's total optimizer steps
done exactly once. The processes the killed driver started are checked to go away with it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.train.job import build_schedule_config
from pipelines.train.schedule import StepSchedule
from vloss.checkpoint import load_training_checkpoint
from vloss.config import resolve

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
SETS = ["input.dense_size=64", "input.caption_size=32", "train.dense_batch_size=8", "train.caption_batch_size=8",
        "train.panoptic_images=16", "train.detection_images=16", "train.caption_images=16", "train.epochs=4",
        "train.log_every=1", "train.checkpoint_every=3", "loss.num_points=256", "model.decoder.num_queries=12",
        "train.eval_every=0"]


def _children(pid: int) -> set[int]:
    """Every descendant of ``pid`` (from /proc; no psutil needed)."""
    parents: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(d))
    out, todo = set(), [pid]
    while todo:
        for c in parents.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _registered(ckpts: Path) -> list[str]:
    """Checkpoint folders Ray Train's run snapshot lists (written after a checkpoint is fully stored)."""
    try:
        snap = json.loads((ckpts / "checkpoint_manager_snapshot.json").read_text())
        return [r["checkpoint_dir_name"] for r in snap["checkpoint_results"]]
    except (OSError, ValueError, KeyError, TypeError):  # absent, or being written
        return []


def _train_command(train_shards: Path, run: Path) -> tuple[list[str], dict[str, str]]:
    """``python -m jobs.train`` as a user runs it on ``run``, and an environment with its own embedded Ray."""
    cmd = [sys.executable, "-m", "jobs.train", "--shards", str(train_shards), "--out", str(run), "--workers", "2",
           "--config", "tiny"]
    for kv in SETS:
        cmd += ["--set", kv]
    return cmd, {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}


def test_killed_driver_rerun_continues_with_the_same_total_steps(train_shards: Path, tmp_path: Path):
    run = tmp_path / "run"
    cmd, env = _train_command(train_shards, run)
    log1 = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log1, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    ckpts = run / "ray_train"
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            if _registered(ckpts):  # a folder alone may be mid-copy: wait until Ray Train has listed one
                break
            time.sleep(0.5)
        log = (tmp_path / "first.log").read_text()
        assert proc.poll() is None, f"the first run ended before its first checkpoint:\n{log}"
        spawned = _children(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)  # the driver only; Ray's processes must follow it
        proc.wait(timeout=30)
        # gcs, raylet, monitors and workers die with the driver at once; Ray's dashboard and runtime-env
        # agents notice that their raylet is gone after about 65 s (measured here)
        gone_by = time.time() + 150
        while time.time() < gone_by and any(_alive(p) for p in spawned):
            time.sleep(0.5)
        left = [p for p in spawned if _alive(p)]
    finally:
        log1.close()
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    for p in left:  # clean up by our own handles before failing
        os.kill(p, signal.SIGKILL)
    assert not left, f"{len(left)} processes of the killed driver outlived it"
    # the run continues from the newest checkpoint Ray Train had listed; a folder still being copied
    # when the driver died is not one of them
    last_saved = max(load_training_checkpoint(ckpts / name)[1]["global_step"] for name in _registered(ckpts))

    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "continuing this run from its latest checkpoint" in second.stdout
    job = resolve("tiny", SETS)
    total = StepSchedule(build_schedule_config(job, str(train_shards))).total_steps
    result = json.loads((run / "result.json").read_text())
    final, meta = load_training_checkpoint(result["checkpoint"])
    assert final["optimizer_steps"] == total and meta["global_step"] == total
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if "step" in json.loads(line)]
    rerun = steps[steps.index(last_saved + 1):] if last_saved + 1 in steps else []
    assert rerun and rerun == list(range(last_saved + 1, total + 1)), (last_saved, steps)
    print(f"killed after checkpoint at step {last_saved}; re-run trained steps {last_saved + 1}..{total} "
          f"(total {total} optimizer steps)")


def test_sigterm_checkpoints_the_step_in_flight_and_the_rerun_logs_every_step_once(train_shards: Path,
                                                                                     tmp_path: Path):
    """Issue #28 item 7: SIGTERM (a scheduler, Kubernetes) makes the workers finish their step and
    checkpoint it; the driver ends with exit 143 and one line naming the step, not an abort with a
    C++ stack. No trained step is lost: with no checkpoint scheduled before the last step, the only
    one is the stop's and holds the last step the first launch logged (its row marked ``stopped``).
    The re-run
    continues from it and ``metrics.jsonl`` holds each step once."""
    run = tmp_path / "run"
    cmd, env = _train_command(train_shards, run)
    cmd += ["--set", "train.checkpoint_every=1000", "--set", "train.checkpoint_sub_epochs=false"]  # none scheduled
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    metrics = run / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 4:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143, (proc.returncode, err[-3000:])
    assert err.count("stopped by SIGTERM") == 1 and "Traceback" not in err and "SIGABRT" not in err, err[-3000:]
    assert "finishing the step in flight" in out, out[-2000:]
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    logged = [r["step"] for r in rows]
    assert [r["step"] for r in rows if r.get("stopped")] == logged[-1:], rows  # the stop's row is the last one
    saved = [p for p in (run / "ray_train").iterdir() if p.name.startswith("checkpoint_") and p.is_dir()]
    assert len(saved) == 1, saved  # none was scheduled before the last step: this one is the stop's
    _, meta = load_training_checkpoint(saved[0])
    job = resolve("tiny", SETS)
    total = StepSchedule(build_schedule_config(job, str(train_shards))).total_steps
    assert 4 <= meta["global_step"] < total and meta["global_step"] == logged[-1], (meta, logged)
    assert f"after step {meta['global_step']} of {total}" in err, err[-2000:]
    assert json.loads((run / "result.json").read_text())["steps_done"] == meta["global_step"]

    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"at step {meta['global_step']}" in second.stdout, second.stdout[-2000:]
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps == list(range(1, total + 1))
    print(f"SIGTERM after step {logged[-1]} of {total}: checkpoint at step {meta['global_step']}; the re-run "
          f"trained {meta['global_step'] + 1}..{total}")


def test_sigterm_with_no_grace_stops_at_once_and_the_rerun_logs_every_step_once(train_shards: Path,
                                                                                tmp_path: Path):
    """``cluster.stop_grace_s=0``: the old behaviour, one line and exit 143 at once; the step in flight
    is trained again after the resume, and ``metrics.jsonl`` still holds each step once."""
    run = tmp_path / "run"
    cmd, env = _train_command(train_shards, run)
    cmd += ["--set", "cluster.stop_grace_s=0"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    ckpts = run / "ray_train"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if ckpts.is_dir() and any(p.name.startswith("checkpoint_") for p in ckpts.iterdir()) \
                and (run / "metrics.jsonl").is_file() and len((run / "metrics.jsonl").read_text().splitlines()) > 4:
            break
        time.sleep(0.5)
    assert proc.poll() is None, "the run ended before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143, (proc.returncode, err[-3000:])
    assert err.count("stopped by SIGTERM") == 1 and "Traceback" not in err and "SIGABRT" not in err, err[-3000:]
    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    job = resolve("tiny", SETS)
    total = StepSchedule(build_schedule_config(job, str(train_shards))).total_steps
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, total + 1))
