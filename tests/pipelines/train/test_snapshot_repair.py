"""Ray Train's run snapshot checked before a run continues (issue #28 item 5), on hand-made run folders."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from pipelines.train.run_dir import SNAPSHOT_FILE, repair_snapshot


def _checkpoint(root: Path, name: str, step: int, truncated: bool = False) -> None:
    folder = root / "ray_train" / name
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({"global_step": step}))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", b"x" * 100)
    data = buf.getvalue()
    (folder / "state.pt").write_bytes(data[: len(data) // 2] if truncated else data)


def _snapshot(root: Path, names: list[str]) -> Path:
    path = root / "ray_train" / SNAPSHOT_FILE
    path.write_text(json.dumps({"checkpoint_results": [{"checkpoint_dir_name": n} for n in names]}))
    return path


def test_a_sound_snapshot_or_none_is_left_alone(tmp_path, capsys):
    assert repair_snapshot(str(tmp_path)) is None  # no run yet
    _checkpoint(tmp_path, "checkpoint_a", 4)
    snap = _snapshot(tmp_path, ["checkpoint_a"])
    before = snap.read_bytes()
    assert repair_snapshot(str(tmp_path)) is None and snap.read_bytes() == before
    assert capsys.readouterr().out == ""


def test_a_snapshot_naming_a_gone_folder_falls_back_to_the_newest_loadable_one(tmp_path, capsys):
    _checkpoint(tmp_path, "checkpoint_a", 4)
    _checkpoint(tmp_path, "checkpoint_b", 8)
    _checkpoint(tmp_path, "checkpoint_c", 12, truncated=True)  # newest, but its state cannot be read
    _snapshot(tmp_path, ["checkpoint_b", "checkpoint_c", "checkpoint_gone"])
    uri, step = repair_snapshot(str(tmp_path))
    assert step == 8 and uri.endswith("ray_train/checkpoint_b")
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "checkpoint_gone" in out and "damaged-1" in out
    assert not (tmp_path / "ray_train" / SNAPSHOT_FILE).exists()
    # a second damaged snapshot is kept beside the first, not over it
    _snapshot(tmp_path, ["checkpoint_gone"])
    assert repair_snapshot(str(tmp_path)) == (uri, 8)
    assert (tmp_path / "ray_train" / f"{SNAPSHOT_FILE}.damaged-2").exists()


def test_a_damaged_snapshot_with_no_complete_folder_starts_again(tmp_path, capsys):
    (tmp_path / "ray_train").mkdir()
    (tmp_path / "ray_train" / SNAPSHOT_FILE).write_text('{"checkpoint_res')
    assert repair_snapshot(str(tmp_path)) == ("", 0)
    assert "cannot be read" in capsys.readouterr().out
