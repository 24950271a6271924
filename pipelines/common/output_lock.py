"""One writer per output: an exclusive, heartbeated lock file in the output directory.

A job takes ``OUT/_lock.json`` before it claims the output (:func:`pipelines.common.output_set.claim_output`)
and holds it until the process exits. The file is created exclusively (``O_CREAT | O_EXCL`` on
a local or shared POSIX disk), so of two jobs started together exactly one gets it; the other
refuses in one line naming the holder, also with ``--overwrite`` (overwriting another job's
live output is never what a user wants). The holder rewrites its heartbeat every
``lease / 4`` seconds. A lock whose holder died is taken over: at once when the holder ran on
this host and its process is gone, otherwise once its heartbeat is older than the lease
(``VLOSS_LOCK_LEASE_S``, default 120 s).

On S3 the lock is created with a conditional write (``If-None-Match: *``,
:mod:`pipelines.common.s3_conditional`), which S3 grants to exactly one of two jobs started
together. Where that cannot be sent (another object store, or boto3 missing) the lock is
written and read back: a guard against a second job started later, not against two started in
the same second.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import threading
import time
import uuid
from typing import Any

import pyarrow.fs as pafs

from pipelines.common.errors import JobError
from pipelines.common.s3_conditional import put_if_absent
from pipelines.common.storage import Location

LOCK_NAME = "_lock.json"
_TOKEN = uuid.uuid4().hex  # this process (a forked child gets its own: it holds nothing)
_held: dict[str, "_Heartbeat"] = {}
_guard = threading.Lock()


def _after_fork() -> None:
    global _TOKEN, _guard
    _TOKEN, _guard = uuid.uuid4().hex, threading.Lock()
    _held.clear()


os.register_at_fork(after_in_child=_after_fork)


class OutputBusyError(JobError):
    """Another live job holds the output directory."""


def lease_s() -> float:
    return float(os.environ.get("VLOSS_LOCK_LEASE_S", "120"))


def _record(started: float) -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "token": _TOKEN, "started": started,
            "heartbeat": time.time()}


def _read(loc: Location) -> dict[str, Any] | None:
    try:
        rec = json.loads(loc.read_bytes())
        return rec if isinstance(rec, dict) else None
    except Exception:  # noqa: BLE001 - missing, half-written or damaged: no valid holder
        return None


def _alive_here(rec: dict[str, Any]) -> bool | None:
    """Whether the holder's process is alive (None: it ran on another host, cannot tell)."""
    if rec.get("host") != socket.gethostname():
        return None
    try:
        os.kill(int(rec.get("pid", -1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True
    return True


def _create_exclusive(loc: Location, rec: dict[str, Any]) -> bool:
    data = json.dumps(rec).encode()
    if not isinstance(loc.fs, pafs.LocalFileSystem):
        created = put_if_absent(loc, data)
        if created is not None:
            return created
        if loc.is_file():
            return False
        loc.write_bytes_atomic(data)
        return (_read(loc) or {}).get("token") == _TOKEN
    try:
        fd = os.open(loc.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return True


class _Heartbeat(threading.Thread):
    def __init__(self, loc: Location, started: float) -> None:
        super().__init__(daemon=True, name=f"vloss-lock-{loc.uri}")
        self.loc, self.started, self.stop = loc, started, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(max(0.5, lease_s() / 4)):
            try:
                if (_read(self.loc) or {}).get("token") == _TOKEN:
                    self.loc.write_bytes_atomic(json.dumps(_record(self.started)).encode())
            except Exception:  # noqa: BLE001 - a missed heartbeat only shortens the lease
                pass

    def release(self) -> None:
        self.stop.set()
        try:
            if (_read(self.loc) or {}).get("token") == _TOKEN:
                self.loc.delete()
        except Exception:  # noqa: BLE001 - at exit: a stale lock is taken over later
            pass


def acquire(out: Location, what: str = "output") -> None:
    """Take the exclusive lock of ``out`` for this process (re-entrant; released at exit).

    Raises:
        OutputBusyError: a live job holds it (names its host, pid, start and last heartbeat).
    """
    with _guard:
        if out.uri in _held:
            return
        loc = out.child(LOCK_NAME)
        started = time.time()
        for _ in range(3):
            if _create_exclusive(loc, _record(started)):
                break
            rec = _read(loc)
            if rec is not None and rec.get("token") == _TOKEN:
                break
            age = time.time() - float((rec or {}).get("heartbeat", 0) or 0)
            alive = _alive_here(rec) if rec is not None else False
            if rec is None or alive is False or (alive is None and age > lease_s()):
                loc.delete()  # the holder died (or the file is damaged): take it over
                continue
            raise OutputBusyError(
                f"{out.uri} is being written by another job (pid {rec.get('pid')} on {rec.get('host')}, started "
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(float(rec.get('started', 0))))}, last "
                f"heartbeat {age:.0f} s ago); wait for it to end or stop it. One job writes an output at a time, "
                f"also with --overwrite; a lock whose holder died is taken over (at once on the same host, after "
                f"{lease_s():.0f} s elsewhere)")
        else:
            raise OutputBusyError(f"{out.uri}: could not take {LOCK_NAME} (it changed hands three times); retry")
        beat = _Heartbeat(loc, started)
        beat.start()
        _held[out.uri] = beat


def release(out: Location) -> None:
    """Give the lock of ``out`` back now (jobs that end before their process does)."""
    with _guard:
        beat = _held.pop(out.uri, None)
    if beat is not None:
        beat.release()


@atexit.register
def _release_all() -> None:
    for beat in list(_held.values()):
        beat.release()
    _held.clear()
