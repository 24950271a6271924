"""One writer per output on S3 (issue #28 item 3): the lock is a conditional create, so of jobs
started together against the same bucket exactly one gets the output."""

from __future__ import annotations

import threading

import pytest

from pipelines.common import output_lock
from pipelines.common.output_lock import LOCK_NAME
from pipelines.common.s3_conditional import put_if_absent
from pipelines.common.storage import locate

pytestmark = pytest.mark.slow  # moto's server start


@pytest.fixture
def bucket(s3_endpoint, monkeypatch):
    for k, v in s3_endpoint.env.items():
        monkeypatch.setenv(k, v)
    return s3_endpoint.create_bucket("vloss-locks")


def test_of_writers_racing_for_one_key_exactly_one_creates_it(bucket, s3_endpoint):
    for trial in range(5):
        loc = locate(f"{bucket}/race{trial}/{LOCK_NAME}")
        start, results = threading.Barrier(6), []

        def attempt(i: int) -> None:
            start.wait()
            results.append((put_if_absent(loc, f"writer {i}".encode()), i))

        threads = [threading.Thread(target=attempt, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        winners = [i for ok, i in results if ok]
        assert len(results) == 6 and len(winners) == 1, results
        assert all(ok is False for ok, i in results if i != winners[0])
        assert loc.read_bytes() == f"writer {winners[0]}".encode()  # the winner's bytes, not overwritten


def test_the_lock_on_a_bucket_refuses_a_second_holder(bucket):
    out = locate(f"{bucket}/run")
    output_lock.acquire(out, "a test output")
    try:
        rec = output_lock._record(0.0)
        rec["token"] = "another-process"
        # a second process would see the lock exists: its conditional create is refused
        assert put_if_absent(out.child(LOCK_NAME), b"{}") is False
        assert output_lock._create_exclusive(out.child(LOCK_NAME), rec) is False
    finally:
        output_lock.release(out)
    assert not out.child(LOCK_NAME).exists()


def test_a_local_path_is_not_this_modules_business(tmp_path):
    assert put_if_absent(locate(str(tmp_path / "x")), b"1") is None  # local disks use O_EXCL instead
    assert not (tmp_path / "x").exists()
