"""`ray job submit` of ``python -m jobs.pseudo_masks`` against a local `ray start --head` cluster.

Ray 2.60 notes (verified here): a local cluster started with ``ray start`` uses token
authentication; the job CLI only sends the token when ``RAY_AUTH_MODE=token`` is set
(otherwise: "Authentication required: Missing authentication token"). The token is
taken from ``RAY_AUTH_TOKEN`` (or ``~/.ray/auth_token``); we pass an explicit one to
both the cluster and the CLI. Fixed ports must lie outside the worker port range
(10002-19999) and the client server (10001) / agent (52365) defaults collide between
clusters on one machine, so every port is chosen here. Teardown stops only the
processes of this cluster (its ``ray start --block`` process group), never ``ray stop``,
which would stop every Ray instance on the machine.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
RAY = str(Path(sys.executable).parent / "ray")

pytestmark = pytest.mark.slow


def _free_port(taken: set[int]) -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not 10000 <= port < 20000 and port not in taken:
            taken.add(port)
            return port


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    taken: set[int] = set()
    gcs, dash, client, agent = (_free_port(taken) for _ in range(4))
    temp_dir = tempfile.mkdtemp(prefix="pmr", dir="/tmp")                     # short: unix socket paths
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16))
    env.pop("RAY_ADDRESS", None)
    log = open(tmp_path_factory.mktemp("ray_head") / "head.log", "w")
    proc = subprocess.Popen(
        [RAY, "start", "--head", "--block", "--num-cpus", "2", "--node-ip-address", "127.0.0.1",
         "--port", str(gcs), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
         "--ray-client-server-port", str(client), "--dashboard-agent-listen-port", str(agent),
         "--temp-dir", temp_dir], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.time() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ray start exited with {proc.returncode}; see {log.name}")
            ok = subprocess.run([RAY, "job", "list", "--address", address], env=env, capture_output=True,
                                timeout=60).returncode == 0
            if ok:
                break
            if time.time() > deadline:
                raise RuntimeError(f"job server at {address} did not come up; see {log.name}")
            time.sleep(2)
        yield address, env
    finally:
        pgid = proc.pid
        try:
            os.killpg(pgid, signal.SIGTERM)
            proc.wait(timeout=10)   # `ray start --block` often lingers after SIGTERM: then SIGKILL
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            proc.wait(timeout=30)
        except ProcessLookupError:
            pass
        try:                                                                   # stragglers of this group only
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.close()


def test_ray_job_submit_runs_the_job(ray_head, synthetic_source, tmp_path):
    address, env = ray_head
    out = tmp_path / "out"
    cmd = [RAY, "job", "submit", "--address", address, "--working-dir", str(REPO), "--", sys.executable, "-m",
           "jobs.pseudo_masks", "--annotations", str(synthetic_source.annotations),
           "--images", str(synthetic_source.images),
           "--out", str(out), "--backend", "box", "--set", "limit=4", "--set", "rows_per_shard=2",
           "--eval-truth", str(synthetic_source.truth), "--num-overlays", "1"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "succeeded" in res.stdout + res.stderr
    assert "Started a local Ray instance" not in res.stdout                    # bare ray.init() joined the cluster
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["counts"]["images"] == 4 and manifest["counts"]["shards"] == 2
    assert manifest["counts"]["masks_written"] == manifest["counts"]["boxes"] > 0
    quality = json.loads((out / "_quality.json").read_text())
    assert 0.0 < quality["mean_iou"] <= 1.0 and quality["count"] == manifest["counts"]["boxes"]
    assert "mean mask IoU" in res.stdout
