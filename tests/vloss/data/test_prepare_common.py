"""The shared pieces of the preparers: atomic links, the resume journal, the summary line."""

from __future__ import annotations

import os

import pytest

from vloss.data.prepare.common import Journal, PrepareError, Skips, Summary, place_dir_link, place_file


def test_place_file_keeps_the_right_file_and_replaces_a_wrong_one(tmp_path):
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    a.write_bytes(b"aaa")
    b.write_bytes(b"bbbb")
    dst = tmp_path / "out" / "x.jpg"
    assert place_file(a, dst) is True and place_file(a, dst) is False
    assert place_file(b, dst) is True and os.readlink(dst) == str(b.absolute())
    copy = tmp_path / "out" / "y.jpg"
    assert place_file(a, copy, "copy") is True and place_file(a, copy, "copy") is False
    assert place_file(b, copy, "copy") is True and copy.read_bytes() == b"bbbb"
    assert [n for n in os.listdir(tmp_path / "out") if ".tmp-" in n] == []


def test_a_real_folder_is_never_replaced_by_a_link(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "dst").mkdir()
    with pytest.raises(PrepareError, match="is a real folder"):
        place_dir_link(tmp_path / "src", tmp_path / "dst")


def test_journal_resumes_and_ignores_a_torn_line_or_other_inputs(tmp_path):
    path = tmp_path / "j.jsonl"
    j = Journal(path, {"src": "a"})
    j.add({"key": "one", "v": 1})
    j.add({"key": "two", "v": 2})
    j.close()
    with open(path, "a") as f:
        f.write('{"key": "three", "v"')          # killed mid-write
    assert set(Journal(path, {"src": "a"}).done) == {"one", "two"}
    assert Journal(path, {"src": "b"}).done == {}


def test_summary_lines_name_expected_counts_and_skips():
    skips = Skips()
    for k in range(7):
        skips.add("image file not found", f"f{k}.jpg")
    s = Summary("x train", {"images": 3, "boxes": 5}, {"images": "10 for the official release"}, skips, ["note"])
    lines = s.lines()
    assert lines[0] == "[x train] done: 3 images (expected 10 for the official release), 5 boxes; 7 skipped"
    assert lines[1] == "[x train] skipped 7: image file not found; e.g. f0.jpg, f1.jpg, f2.jpg, f3.jpg, f4.jpg"
    assert Summary.from_json(s.to_json()).lines()[1:] == lines[1:]
