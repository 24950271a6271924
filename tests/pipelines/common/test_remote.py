"""The driver's mirror of object-store inputs and the publishing of its outputs, against moto's S3 server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipelines.common.remote import fetch, is_remote, mirror_path, publish, to_uri


@pytest.fixture
def s3(s3_endpoint, monkeypatch, tmp_path):
    for k, v in s3_endpoint.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("VLOSS_CACHE", str(tmp_path / "cache"))
    name = f"remote-{os.getpid()}-{len(os.listdir(tmp_path))}"
    return s3_endpoint, s3_endpoint.create_bucket(name)


def _put(s3, uri: str, data: bytes) -> None:
    with s3.filesystem().open_output_stream(uri.split("://", 1)[1]) as f:
        f.write(data)


def test_local_paths_pass_through(tmp_path):
    assert not is_remote(str(tmp_path)) and not is_remote(None)
    assert fetch(str(tmp_path / "x")) == str(tmp_path / "x")


def test_fetch_mirrors_a_folder_and_refreshes_only_what_changed(s3, tmp_path):
    endpoint, bucket = s3
    _put(endpoint, f"{bucket}/ck/state.pt", b"A" * 10)
    _put(endpoint, f"{bucket}/ck/sub/meta.json", b"{}")
    _put(endpoint, f"{bucket}/ck/keep.txt", b"k")
    local = Path(fetch(f"{bucket}/ck"))
    assert local == Path(mirror_path(f"{bucket}/ck")) and str(local).startswith(str(tmp_path / "cache"))
    assert (local / "state.pt").read_bytes() == b"A" * 10 and (local / "sub" / "meta.json").read_bytes() == b"{}"
    os.utime(local / "keep.txt", ns=(1, 1))                              # marks the mirrored copy
    _put(endpoint, f"{bucket}/ck/state.pt", b"B" * 12)                   # changed upstream
    endpoint.filesystem().delete_file(f"{bucket.split('://')[1]}/ck/sub/meta.json")
    _put(endpoint, f"{bucket}/ck/new.txt", b"n")
    fetch(f"{bucket}/ck")
    assert (local / "state.pt").read_bytes() == b"B" * 12
    assert not (local / "sub" / "meta.json").exists() and (local / "new.txt").read_bytes() == b"n"
    assert (local / "keep.txt").stat().st_mtime_ns == 1                  # unchanged upstream: not downloaded again
    assert to_uri(str(local / "new.txt"), f"{bucket}/ck") == f"{bucket}/ck/new.txt"


def test_fetch_of_a_missing_uri_names_it(s3):
    _, bucket = s3
    with pytest.raises(FileNotFoundError, match=f"--checkpoint {bucket}/nothing"):
        fetch(f"{bucket}/nothing", "--checkpoint")


def test_publish_leaves_exactly_the_new_results(s3, tmp_path):
    endpoint, bucket = s3
    _put(endpoint, f"{bucket}/out/stale.png", b"old")
    _put(endpoint, f"{bucket}/out/metrics.json", b"old")
    src = tmp_path / "src"
    (src / "predictions").mkdir(parents=True)
    (src / "metrics.json").write_text('{"pq": 1}')
    (src / "predictions" / "a.png").write_bytes(b"png")
    assert publish(str(src), f"{bucket}/out") == 2
    assert endpoint.list(f"{bucket}/out") == ["metrics.json", "predictions/a.png"]
    assert Path(fetch(f"{bucket}/out/metrics.json")).read_text() == '{"pq": 1}'
    with pytest.raises(ValueError, match="local path"):
        publish(str(src), str(tmp_path / "elsewhere"))
