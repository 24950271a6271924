"""The images a prediction job reads: a folder (local or object store, searched recursively) or a local glob."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import posixpath

import pyarrow.fs as pafs

from pipelines.common.storage import locate
from vloss.data.images import IMAGE_SUFFIXES


def list_images(spec: str) -> list[str]:
    """Image paths / URIs under ``spec``, sorted (the order fixes each image's index and shard).

    Args:
        spec: a file, a folder or object-store prefix (recursive), or a local glob pattern.

    Raises:
        FileNotFoundError: nothing there, or no image in it (names ``spec``).
    """
    loc = locate(spec)
    info = loc.fs.get_file_info(loc.path)
    if info.type == pafs.FileType.File:
        return [spec]
    if info.type == pafs.FileType.Directory:
        infos = loc.fs.get_file_info(pafs.FileSelector(loc.path, recursive=True))
        base = loc.path.rstrip("/\\")
        rel = sorted(i.path[len(base) + 1:].replace("\\", "/") for i in infos
                     if i.type == pafs.FileType.File and posixpath.splitext(i.path)[1].lower() in IMAGE_SUFFIXES)
        out = [loc.child(r).uri for r in rel]
        if isinstance(loc.fs, pafs.LocalFileSystem):  # symlinks must not lead outside the folder
            root = os.path.realpath(loc.path)
            escaping = [u for u in out if os.path.commonpath([root, os.path.realpath(locate(u).path)]) != root]
            if escaping:
                raise ValueError(f"{spec}: {len(escaping)} file(s) lead outside the folder through symlinks "
                                 f"(first: {escaping[0]} -> {os.path.realpath(locate(escaping[0]).path)}); "
                                 f"remove them or copy the images in")
    elif "://" not in spec and any(ch in spec for ch in "*?["):
        out = sorted(p for p in glob.glob(spec, recursive=True) if posixpath.splitext(p)[1].lower() in IMAGE_SUFFIXES)
    else:
        raise FileNotFoundError(f"{spec}: no such file or folder")
    if not out:
        raise FileNotFoundError(f"{spec}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return out


def listing_sha256(paths: list[str]) -> str:
    """Digest of an image listing (part of the job's fingerprint)."""
    return hashlib.sha256(json.dumps(paths).encode()).hexdigest()
