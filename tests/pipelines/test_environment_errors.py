"""Faults of the machine or the store end a job with one line and exit 2, never a traceback
(issue #28 item 4): disk full, read-only output, object-store errors, JSON nested too deeply."""

from __future__ import annotations

import errno

import pytest

from pipelines.common.errors import environment_message, report_errors
from pipelines.common.storage import locate, read_json
from vloss.data.errors import DataFormatError


@pytest.mark.parametrize("exc,words", [
    (OSError(errno.ENOSPC, "No space left on device", "/out/gen-0001/part-00003.parquet"),
     ["no space left", "part-00003.parquet", "re-run the same command"]),
    (OSError(errno.EROFS, "Read-only file system", "/mnt/ro/out"), ["cannot write there", "/mnt/ro/out"]),
    (PermissionError(errno.EACCES, "Permission denied", "/root/x"), ["cannot write there", "/root/x"]),
    (OSError("When getting information for key 'x' in bucket 'nope': AWS Error NO_SUCH_BUCKET during "
             "HeadObject operation: The specified bucket does not exist"), ["object storage", "nope", "credentials"]),
    (RecursionError("maximum recursion depth exceeded"), ["nested too deeply"]),
])
def test_one_line_exit_2(exc, words, capsys):
    def fail():
        raise exc

    assert report_errors("python -m jobs.x", fail) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m jobs.x: error: ") and "Traceback" not in err
    for w in words:
        assert w in err
    assert environment_message(exc) in err


def test_json_nested_thousands_deep_is_a_format_error_naming_the_file(tmp_path):
    f = tmp_path / "deep.json"
    f.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataFormatError, match="deep.json.*nested too deeply"):
        read_json(locate(str(f)))
