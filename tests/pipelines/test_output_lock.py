"""One writer per output (issue #28 item 3): the lock file is taken exclusively, a live holder is
named in one line (also against --overwrite), a dead holder's lock is taken over, and a damaged
fingerprint file is recoverable with --overwrite."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.common import output_lock
from pipelines.common.output_lock import LOCK_NAME, OutputBusyError
from pipelines.common.output_set import OutputConflictError, claim_output
from pipelines.common.storage import locate

REPO = Path(__file__).resolve().parents[2]


def _try(path: str, start, results) -> None:
    start.wait()
    try:
        output_lock.acquire(locate(path))
        results.put("got")
        time.sleep(0.5)  # hold it while the other one tries
    except OutputBusyError:
        results.put("busy")


def test_of_two_jobs_started_together_exactly_one_gets_the_output(tmp_path):
    ctx = mp.get_context("fork")
    for trial in range(20):
        out = tmp_path / f"t{trial}"
        out.mkdir()
        start, results = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_try, args=(str(out), start, results)) for _ in range(2)]
        for p in procs:
            p.start()
        start.set()
        for p in procs:
            p.join(30)
        assert sorted(results.get(timeout=5) for _ in procs) == ["busy", "got"], trial


def _holder(path: Path) -> subprocess.Popen:
    code = ("import sys, time; from pipelines.common import output_lock; from pipelines.common.storage import locate; "
            "output_lock.acquire(locate(sys.argv[1])); print('held', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_live_holder_is_named_and_a_killed_one_is_taken_over(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    holder = _holder(out)
    try:
        busy = rf"pid {holder.pid} on {socket.gethostname()}.*also with --overwrite"
        with pytest.raises(OutputBusyError, match=busy):
            claim_output(str(out), {"a": 1}, overwrite=True)
        assert not (out / "_fingerprint.json").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    claim = claim_output(str(out), {"a": 1})  # the holder died on this host: taken over at once
    assert claim.generation == "gen-0001"
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == os.getpid()
    output_lock.release(locate(str(out)))
    assert not (out / LOCK_NAME).exists()


def test_another_hosts_lock_is_honoured_until_its_lease_runs_out(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    rec = {"host": "node-7", "pid": 1, "token": "x", "started": time.time(), "heartbeat": time.time()}
    (out / LOCK_NAME).write_text(json.dumps(rec))
    with pytest.raises(OutputBusyError, match="pid 1 on node-7"):
        output_lock.acquire(locate(str(out)))
    rec["heartbeat"] = time.time() - 1000
    (out / LOCK_NAME).write_text(json.dumps(rec))
    monkeypatch.setenv("VLOSS_LOCK_LEASE_S", "60")
    output_lock.acquire(locate(str(out)))
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == os.getpid()
    output_lock.release(locate(str(out)))


def test_a_damaged_fingerprint_file_is_recoverable_with_overwrite(tmp_path):
    out = tmp_path / "out"
    claim_output(str(out), {"a": 1})
    output_lock.release(locate(str(out)))
    (out / "_fingerprint.json").write_text('{"fingerprint": {"a"')  # truncated
    with pytest.raises(OutputConflictError, match=r"_fingerprint.json is damaged.*--overwrite"):
        claim_output(str(out), {"a": 1})
    claim = claim_output(str(out), {"a": 1}, overwrite=True)
    assert claim.generation == "gen-0001" and not claim.resumed
    assert claim_output(str(out), {"a": 1}).resumed
    output_lock.release(locate(str(out)))
