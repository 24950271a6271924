"""Filesystem helpers over ``pyarrow.fs``: local paths and object-store URIs alike.

Any string with a scheme (``s3://``, ``gs://``, ``file://``, ``hdfs://``) is resolved
with ``pyarrow.fs.FileSystem.from_uri``; anything else is a local path. A
``Location`` keeps the resolved filesystem so that per-file work (thousands of
images) does not re-resolve the URI, and it pickles into Ray tasks and actors.

Writes are atomic where the filesystem allows: ``write_bytes_atomic`` writes a
temporary sibling and renames it (``LocalFileSystem.move`` is ``rename``; on object
stores a single PUT is already all-or-nothing and ``move`` is copy+delete of a
complete object), so a reader never sees a half-written file under the final name.

Object storage retries: every S3 filesystem (resolved here, or unpickled in a Ray task) retries a
failed request with AWS's standard strategy (exponential backoff with jitter, throttling and
5xx answers and dropped connections) up to ``VLOSS_S3_MAX_ATTEMPTS`` attempts (default 6), then
the error reaches the job's one-line report. Measured against a throttling proxy: three 503
SlowDown answers cost 4.1 s of backoff, so the default's five retries wait about 20 s at most.
pyarrow's own default is 3 attempts, and a filesystem it unpickles forgets a retry strategy.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import uuid
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs

from vloss.data.errors import DataFormatError

S3_ATTEMPTS_ENV = "VLOSS_S3_MAX_ATTEMPTS"
DEFAULT_S3_ATTEMPTS = 6


def s3_attempts() -> int:
    """Attempts per S3 request (``VLOSS_S3_MAX_ATTEMPTS``, default 6; 1 = no retry)."""
    raw = os.environ.get(S3_ATTEMPTS_ENV, "")
    if not raw.strip():
        return DEFAULT_S3_ATTEMPTS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{S3_ATTEMPTS_ENV}={raw!r}: expected a whole number of attempts >= 1")
    return value


def with_retries(fs: pafs.FileSystem) -> pafs.FileSystem:
    """``fs`` itself, or for S3 the same filesystem with the retry strategy of :func:`s3_attempts`."""
    if not isinstance(fs, pafs.S3FileSystem):
        return fs
    options = fs.__reduce__()[1][0]  # the constructor arguments pyarrow pickles (without the retry strategy)
    return pafs.S3FileSystem(**options, retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=s3_attempts()))


def _rebuilt(fs: pafs.FileSystem, path: str, uri: str) -> "Location":
    return Location(with_retries(fs), path, uri)


def _has_scheme(uri: str) -> bool:
    head, sep, _ = uri.partition("://")
    return bool(sep) and head.isalnum() and len(head) > 1


@dataclass
class Location:
    """A filesystem and a path on it.

    Args:
        fs: the pyarrow filesystem.
        path: path on ``fs`` (no scheme).
        uri: the string the user gave (used in messages and manifests).
    """

    fs: pafs.FileSystem
    path: str
    uri: str

    def __reduce__(self):
        # pickled into Ray tasks and actors: the S3 retry strategy is re-applied on the other side
        return _rebuilt, (self.fs, self.path, self.uri)

    def child(self, *names: str) -> "Location":
        """The location of ``names`` under this one (``/``-joined, URI kept in step)."""
        rel = posixpath.join(*names)
        if isinstance(self.fs, pafs.LocalFileSystem):
            path = os.path.join(self.path, *names)
        else:
            path = posixpath.join(self.path, rel)
        return Location(self.fs, path, self.uri.rstrip("/") + "/" + rel)

    def exists(self) -> bool:
        return self.fs.get_file_info(self.path).type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self.fs.get_file_info(self.path).type == pafs.FileType.File

    def read_bytes(self) -> bytes:
        """Whole file contents; ``FileNotFoundError`` naming the URI when absent."""
        info = self.fs.get_file_info(self.path)
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"{self.uri}: no such file")
        if info.type != pafs.FileType.File:
            raise IsADirectoryError(f"{self.uri}: not a file")
        with self.fs.open_input_stream(self.path) as f:
            return f.read()

    def makedirs(self) -> None:
        self.fs.create_dir(self.path, recursive=True)

    def write_bytes_atomic(self, data: bytes) -> None:
        """Write ``data`` to a temporary sibling, then rename it into place."""
        parent = posixpath.dirname(self.path) if not isinstance(self.fs, pafs.LocalFileSystem) \
            else os.path.dirname(self.path)
        if parent:
            self.fs.create_dir(parent, recursive=True)
        base = posixpath.basename(self.path) if not isinstance(self.fs, pafs.LocalFileSystem) \
            else os.path.basename(self.path)
        tmp_name = f".{base}.tmp-{uuid.uuid4().hex[:12]}"
        tmp = os.path.join(parent, tmp_name) if isinstance(self.fs, pafs.LocalFileSystem) \
            else posixpath.join(parent, tmp_name)
        try:
            with self.fs.open_output_stream(tmp) as f:
                f.write(data)
            self.fs.move(tmp, self.path)
        finally:
            if self.fs.get_file_info(tmp).type != pafs.FileType.NotFound:
                self.fs.delete_file(tmp)

    def delete(self) -> None:
        if self.is_file():
            self.fs.delete_file(self.path)

    def list_names(self) -> list[str]:
        """Base names of the files directly under this directory (empty if it does not exist)."""
        if self.fs.get_file_info(self.path).type != pafs.FileType.Directory:
            return []
        sel = pafs.FileSelector(self.path, recursive=False)
        return sorted(posixpath.basename(i.path.replace(os.sep, "/")) for i in self.fs.get_file_info(sel)
                      if i.type == pafs.FileType.File)

    def list_dirs(self) -> list[str]:
        """Base names of the folders directly under this directory (empty if it does not exist)."""
        if self.fs.get_file_info(self.path).type != pafs.FileType.Directory:
            return []
        sel = pafs.FileSelector(self.path, recursive=False)
        return sorted(posixpath.basename(i.path.replace(os.sep, "/")) for i in self.fs.get_file_info(sel)
                      if i.type == pafs.FileType.Directory)

    def mtime_ns(self) -> int | None:
        info = self.fs.get_file_info(self.path)
        return None if info.mtime_ns is None else int(info.mtime_ns)

    def sha256(self, chunk: int = 1 << 22) -> str:
        """Streaming sha256 of the file's bytes."""
        h = hashlib.sha256()
        with self.fs.open_input_stream(self.path) as f:
            while True:
                buf = f.read(chunk)
                if not buf:
                    break
                h.update(buf)
        return h.hexdigest()


def locate(uri_or_path: "str | os.PathLike | Location") -> Location:
    """Resolve a local path or a URI to a ``Location`` (a ``Location`` is returned as is).

    Args:
        uri_or_path: ``/data/x``, ``rel/x``, ``file:///data/x``, ``s3://bucket/x``, ... or a
            ``Location`` already resolved.
    """
    if isinstance(uri_or_path, Location):
        return uri_or_path
    s = os.fspath(uri_or_path)
    if _has_scheme(s):
        fs, path = pafs.FileSystem.from_uri(s)
        return Location(with_retries(fs), path, s)
    return Location(pafs.LocalFileSystem(), os.path.abspath(s), s)


def read_json(loc: Location) -> Any:
    """Parse a JSON file; malformed JSON raises ``DataFormatError`` naming the file and position."""
    data = loc.read_bytes()
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFormatError(loc.uri, f"not valid JSON ({exc})") from exc
    except RecursionError as exc:  # "[[[[..." thousands deep: Python's parser gives up
        raise DataFormatError(loc.uri, "JSON nested too deeply to parse (not an annotation file)") from exc


def write_json_atomic(loc: Location, obj: Any) -> None:
    loc.write_bytes_atomic((json.dumps(obj, indent=2, sort_keys=False) + "\n").encode("utf-8"))
