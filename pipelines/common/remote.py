"""Object-store files on the driver: a local mirror of ``s3://`` (or ``gs://``) inputs, and results sent back.

Most of a job's bulk reads (images, shards, pseudo masks) go straight through ``pyarrow.fs`` on
whichever node does the work. A few readers need a local file on the driver: the scorers
(pycocotools, lvis-api and the PQ code open paths), the checkpoint loader (``torch.load`` of a
file, ``weights_only=True``), and the report writer. For those, :func:`fetch` mirrors a remote
file or folder under one cache folder, keyed by its URI, and downloads again only what changed
(size or modification time); :func:`publish` sends a finished local output folder to its URI.

The mirror of ``s3://bucket/a/b`` is ``CACHE/s3/bucket/a/b``, so relative paths are the same on
both sides (:func:`to_uri` maps back). ``CACHE`` is ``$VLOSS_CACHE/remote`` (default
``~/.cache/vloss/remote``). Credentials and the endpoint come from the standard AWS variables
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``),
read by pyarrow's S3 filesystem.
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil

import pyarrow.fs as pafs

from pipelines.common.storage import Location, locate

_STAMPS = ".vloss-remote-stamps.json"


def is_remote(uri_or_path: str | os.PathLike | None) -> bool:
    """Whether ``uri_or_path`` lives on an object store (anything but a local path or ``file://``)."""
    if uri_or_path is None:
        return False
    return not isinstance(locate(os.fspath(uri_or_path)).fs, pafs.LocalFileSystem)


def cache_root() -> str:
    """The folder holding the mirrors (``$VLOSS_CACHE/remote``, default ``~/.cache/vloss/remote``)."""
    base = os.environ.get("VLOSS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "vloss")
    return os.path.join(base, "remote")


def _scheme(uri: str) -> str:
    return uri.split("://", 1)[0].lower()


def mirror_path(uri: str) -> str:
    """The local mirror of ``uri`` (nothing is downloaded). A local path is returned unchanged."""
    if not is_remote(uri):
        return locate(uri).path
    loc = locate(uri)
    parts = [p for p in loc.path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ValueError(f"{uri}: '.' or '..' in an object-store path")
    return os.path.join(cache_root(), _scheme(uri), *parts)


def to_uri(local_path: str, remote_root: str) -> str:
    """The URI under ``remote_root`` that ``local_path`` (inside its mirror) stands for."""
    rel = os.path.relpath(local_path, mirror_path(remote_root))
    if rel.startswith(".."):
        raise ValueError(f"{local_path} is not inside the mirror of {remote_root}")
    return remote_root.rstrip("/") if rel == "." else remote_root.rstrip("/") + "/" + rel.replace(os.sep, "/")


def _load_stamps(folder: str) -> dict[str, list]:
    try:
        with open(os.path.join(folder, _STAMPS)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _fetch_file(loc: Location, info: pafs.FileInfo, dest: str, stamps: dict[str, list], key: str) -> bool:
    stamp = [info.size, info.mtime_ns]
    if stamps.get(key) == stamp and os.path.isfile(dest) and os.path.getsize(dest) == info.size:
        return False
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = dest + ".part"
    with loc.fs.open_input_stream(info.path) as src, open(tmp, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 22)
    os.replace(tmp, dest)
    stamps[key] = stamp
    return True


def fetch(uri: str | os.PathLike, what: str = "input") -> str:
    """A local path holding ``uri``: the path itself when local, else its refreshed mirror.

    A folder is mirrored recursively; files unchanged since the last fetch (same size and
    modification time) are not downloaded again, and files gone from the store are removed
    from the mirror.

    Args:
        uri: a local path or an object-store URI of a file or a folder.
        what: what it is, for the error message (``"--checkpoint"``).

    Raises:
        FileNotFoundError: nothing exists at ``uri`` (the message names it and ``what``).
    """
    uri = os.fspath(uri)
    if not is_remote(uri):
        return uri
    loc = locate(uri)
    info = loc.fs.get_file_info(loc.path)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"{what} {uri}: no such object or prefix (endpoint "
                                f"{os.environ.get('AWS_ENDPOINT_URL', 'default')})")
    dest = mirror_path(uri)
    if info.type == pafs.FileType.File:
        parent = os.path.dirname(dest)
        os.makedirs(parent, exist_ok=True)
        stamps = _load_stamps(parent)
        if _fetch_file(loc, info, dest, stamps, os.path.basename(dest)):
            _save_stamps(parent, stamps)
        return dest
    os.makedirs(dest, exist_ok=True)
    stamps = _load_stamps(dest)
    seen = set()
    for item in loc.fs.get_file_info(pafs.FileSelector(loc.path, recursive=True)):
        if item.type != pafs.FileType.File:
            continue
        rel = posixpath.relpath(item.path, loc.path)
        if rel.startswith("..") or rel == _STAMPS:
            continue
        seen.add(rel)
        _fetch_file(loc, item, os.path.join(dest, *rel.split("/")), stamps, rel)
    for rel in [r for r in stamps if r not in seen]:  # deleted upstream: drop from the mirror too
        stamps.pop(rel)
        try:
            os.remove(os.path.join(dest, *rel.split("/")))
        except FileNotFoundError:
            pass
    _save_stamps(dest, stamps)
    return dest


def _save_stamps(folder: str, stamps: dict[str, list]) -> None:
    tmp = os.path.join(folder, _STAMPS + ".part")
    with open(tmp, "w") as f:
        json.dump(stamps, f)
    os.replace(tmp, os.path.join(folder, _STAMPS))


def publish(local_dir: str, uri: str) -> int:
    """Send the finished folder ``local_dir`` to ``uri``; returns the number of files written.

    Every file is written with one PUT (all or nothing per object). Objects under ``uri`` that
    the new folder does not hold (results of an earlier run) are deleted afterwards, so the
    prefix ends up holding exactly this run's results.
    """
    if not is_remote(uri):
        raise ValueError(f"publish() sends a folder to an object store; {uri} is a local path")
    dest = locate(uri)
    written = set()
    for dirpath, _, files in os.walk(local_dir):
        for name in files:
            if name == _STAMPS or name.endswith(".part"):
                continue
            src = os.path.join(dirpath, name)
            rel = os.path.relpath(src, local_dir).replace(os.sep, "/")
            target = dest.child(rel)
            with open(src, "rb") as f, target.fs.open_output_stream(target.path) as out:  # one PUT
                shutil.copyfileobj(f, out, 1 << 22)
            written.add(rel)
    if dest.fs.get_file_info(dest.path).type == pafs.FileType.Directory:
        for item in dest.fs.get_file_info(pafs.FileSelector(dest.path, recursive=True)):
            rel = posixpath.relpath(item.path, dest.path)
            if item.type == pafs.FileType.File and rel not in written:
                dest.fs.delete_file(item.path)
    return len(written)
