"""The shard-set writer's one validity rule: a shard is kept only if its bytes hash to the checksum
recorded when it was written and the job's content check passes; everything else is rebuilt with
the reason recorded, and the manifest lists exactly the set (independent check: hashlib)."""

from __future__ import annotations

import hashlib

import pytest

from pipelines.common.output_set import OutputConflictError, verified_shards
from pipelines.common.shard_writer import ShardSetWriter


def _content(loc):
    text = loc.read_bytes().decode()
    if not text.startswith("rows:"):
        raise ValueError("not a shard of this plan")
    return text, int(text.split(":")[1])


def _write_set(out, shards: dict[str, bytes]) -> tuple[dict, ShardSetWriter]:
    with ShardSetWriter(out, {"plan": 1}, what="test shards") as w:
        for name, data in shards.items():
            if w.kept(name, _content) is None:
                w.write(name, data, int(data.decode().split(":")[1]))
        w.remove_strays()
        manifest = w.commit("_manifest.json", {"shards": [w.entries[n] for n in shards]})
    return manifest, w


def test_kept_written_and_rebuilt_shards(tmp_path):
    out = tmp_path / "out"
    data = {"part-00000.parquet": b"rows:3", "sub/part-00001.parquet": b"rows:5"}
    first, _ = _write_set(out, data)
    gen = out / first["generation"]
    assert [e["sha256"] for e in first["shards"]] == [hashlib.sha256(v).hexdigest() for v in data.values()]
    assert [e["rows"] for e in first["shards"]] == [3, 5]
    verified_shards(out, "_manifest.json")  # the committed set reads back

    again, w = _write_set(out, data)  # nothing changed: everything kept, the same entries
    assert again["shards"] == first["shards"] and w.rebuilt == {}

    (gen / "part-00000.parquet").write_bytes(b"rows:4")  # altered with a plausible content
    (gen / "sub" / ".part-00001.parquet.sha256").unlink()  # a shard without its checksum
    (gen / "stray.parquet").write_bytes(b"rows:1")  # a copy left by hand
    third, w = _write_set(out, data)
    assert w.rebuilt == {"part-00000.parquet": "changed since it was written (sha256 differs)",
                         "sub/part-00001.parquet": "no checksum recorded when it was written"}
    assert third["shards"] == first["shards"] and not (gen / "stray.parquet").exists()
    assert (gen / "part-00000.parquet").read_bytes() == b"rows:3"


def test_the_content_check_decides_after_the_checksum(tmp_path):
    out = tmp_path / "out"
    _write_set(out, {"part-00000.parquet": b"bad:1"})  # written, but its content check fails
    _, w = _write_set(out, {"part-00000.parquet": b"bad:1"})
    assert w.rebuilt == {"part-00000.parquet": "not a shard of this plan"}


def test_another_plan_is_refused_and_the_lock_given_back(tmp_path):
    out = tmp_path / "out"
    _write_set(out, {"part-00000.parquet": b"rows:1"})
    with pytest.raises(OutputConflictError, match="plan: 1 -> 2"):
        ShardSetWriter(out, {"plan": 2}, what="test shards")
    with ShardSetWriter(out, {"plan": 2}, what="test shards", overwrite=True) as w:  # not left locked
        assert w.generation == "gen-0002"
