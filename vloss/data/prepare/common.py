"""What every preparer shares: finding inputs, atomic writes, links, resume bookkeeping, summaries.

Atomic: every file is written under a temporary name in its destination folder
(``.NAME.tmp-PID-RANDOM``) and renamed into place, so a file that exists under its final name
is complete. A killed run leaves only temporaries, which the next run removes
(:func:`remove_temps`) before it redoes their files.

Resumable: links and copies that already hold the right file are kept (:func:`place_file`);
converted files are recorded in a :class:`Journal` as they are finished, so a re-run redoes
only what is missing; a finished split records its :class:`Marker` (the inputs it was made
from and its summary), and a re-run with the same inputs is a no-op.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Protocol, TextIO

LINK_MODES = ("symlink", "hardlink", "copy")
MARKER_DIR = ".prepared"
EXAMPLES = 5  # examples kept per skip reason


class PrepareError(RuntimeError):
    """Input that a preparer cannot use: missing files or folders, or inconsistent releases.

    The message names what is wrong and where (the paths tried, counts and first examples).
    """


# ----------------------------------------------------------------------------- finding inputs

def maybe_input(src: Path, candidates: Iterable[str], *, kind: str = "file") -> Path | None:
    """The first of ``src / candidate`` that exists (``kind``: ``"file"`` or ``"dir"``), else None."""
    for cand in candidates:
        p = src / cand
        if p.is_dir() if kind == "dir" else p.is_file():
            return p
    return None


def file_identity(path: Path) -> dict[str, Any]:
    """What identifies an input file in a fingerprint: resolved path, size, modification time."""
    st = path.stat()
    return {"path": str(path.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


# ----------------------------------------------------------------------------- atomic writes

def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(3)}")


def is_temp_name(name: str) -> bool:
    """Whether a file name is one of this module's temporaries."""
    return name.startswith(".") and ".tmp-" in name


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    Args:
        path: destination (its folder is created).
        data: the file's bytes.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any, *, indent: int | None = None) -> None:
    """Write ``obj`` as JSON atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, json.dumps(obj, indent=indent).encode())


def write_json_if_changed(path: Path, obj: Any, *, indent: int | None = None) -> bool:
    """Write ``obj`` atomically unless ``path`` already holds exactly that JSON; True if written."""
    data = json.dumps(obj, indent=indent).encode()
    if path.is_file() and path.read_bytes() == data:
        return False
    atomic_write_bytes(path, data)
    return True


def remove_temps(folder: Path) -> int:
    """Delete the temporaries a killed run left in ``folder`` (not recursive); returns how many."""
    if not folder.is_dir() or folder.is_symlink():
        return 0
    n = 0
    with os.scandir(folder) as it:
        for entry in it:
            if is_temp_name(entry.name) and not entry.is_dir(follow_symlinks=False):
                os.unlink(entry.path)
                n += 1
    return n


# ----------------------------------------------------------------------------- links and copies

class ProgressLineLike(Protocol):
    """What the helpers need of :class:`vloss.progress.ProgressLine`."""

    def update(self, n: int = 1, postfix: str | None = None) -> None: ...


def _check_mode(mode: str) -> None:
    if mode not in LINK_MODES:
        raise ValueError(f"link mode must be one of {LINK_MODES}, got {mode!r}")


def place_file(src: Path, dst: Path, mode: str = "symlink") -> bool:
    """Make ``dst`` a symlink to, a hard link of, or a copy of ``src``, atomically.

    An existing ``dst`` is kept when it already is that file (symlink to the same absolute
    target, the same inode, or a copy of the same size); otherwise it is replaced.

    Args:
        src: an existing file.
        dst: where it goes (its folder is created).
        mode: ``symlink`` (absolute target), ``hardlink`` or ``copy``.

    Returns:
        True if ``dst`` was made, False if it was kept.
    """
    _check_mode(mode)
    target = src.absolute()
    if os.path.lexists(dst):
        if mode == "symlink":
            if dst.is_symlink() and os.readlink(dst) == str(target):
                return False
        elif not dst.is_symlink() and dst.is_file():
            if mode == "hardlink" and os.path.samefile(dst, src):
                return False
            if mode == "copy" and dst.stat().st_size == src.stat().st_size:
                return False
        if dst.is_dir() and not dst.is_symlink():
            raise PrepareError(f"{dst} is a folder; a file ({mode} of {src}) goes there. Remove it or choose "
                               f"another --out")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(dst)
    try:
        if mode == "symlink":
            os.symlink(target, tmp)
        elif mode == "hardlink":
            os.link(src, tmp)
        else:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    return True


def place_dir_link(src: Path, dst: Path) -> bool:
    """Make ``dst`` a symlink to the folder ``src`` (absolute), atomically; False if it already is.

    Raises:
        PrepareError: ``dst`` is a real folder (not a link): it is never replaced.
    """
    target = src.absolute()
    if dst.is_symlink():
        if os.readlink(dst) == str(target):
            return False
    elif dst.exists():
        raise PrepareError(f"{dst} is a real folder, not a link to {src}; remove it, choose another --out, "
                           f"or use --link copy/hardlink to fill it file by file")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(dst)
    os.symlink(target, tmp, target_is_directory=True)
    os.replace(tmp, dst)
    return True


def list_files(folder: Path, suffixes: tuple[str, ...] | None = None) -> list[str]:
    """Sorted names of the plain files in ``folder`` (temporaries left out), optionally by suffix."""
    with os.scandir(folder) as it:
        names = [e.name for e in it if e.is_file() and not is_temp_name(e.name)
                 and (suffixes is None or e.name.endswith(suffixes))]
    return sorted(names)


def place_folder(src: Path, dst: Path, mode: str, names: list[str] | None = None,
                 progress: ProgressLineLike | None = None) -> tuple[int, int]:
    """Put the folder ``src`` at ``dst``: one folder symlink, or file by file (hard links, copies).

    Args:
        src: an existing folder.
        dst: where it goes.
        mode: ``symlink`` links the folder itself; ``hardlink`` / ``copy`` fill a real folder.
        names: the files to place (default: every file of ``src``); ignored for ``symlink``.
        progress: advanced by one per file.

    Returns:
        ``(made, kept)`` files (a folder symlink counts as one).
    """
    _check_mode(mode)
    if mode == "symlink":
        made = place_dir_link(src, dst)
        if progress is not None:
            progress.update(1)
        return int(made), int(not made)
    if dst.is_symlink():
        dst.unlink()   # a folder link of an earlier symlink run: fill a real folder instead
    dst.mkdir(parents=True, exist_ok=True)
    remove_temps(dst)
    made = kept = 0
    for name in list_files(src) if names is None else names:
        if place_file(src / name, dst / name, mode):
            made += 1
        else:
            kept += 1
        if progress is not None:
            progress.update(1)
    return made, kept


def zip_members(archive: Path, prefix: str) -> dict[str, zipfile.ZipInfo]:
    """The files of ``archive`` under the folder ``prefix`` (``panoptic_val2017/``), by base name."""
    with zipfile.ZipFile(archive) as zf:
        return {PurePosixPath(i.filename).name: i for i in zf.infolist()
                if not i.is_dir() and i.filename.startswith(prefix)}


def extract_zip_folder(archive: Path, prefix: str, dst: Path, progress: ProgressLineLike | None = None
                       ) -> tuple[int, int]:
    """Extract the files under ``prefix`` of ``archive`` flat into ``dst``, each atomically.

    A file already in ``dst`` with the member's size is kept.

    Returns:
        ``(made, kept)`` files.
    """
    dst.mkdir(parents=True, exist_ok=True)
    remove_temps(dst)
    made = kept = 0
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            if info.is_dir() or not info.filename.startswith(prefix):
                continue
            out = dst / PurePosixPath(info.filename).name
            if out.is_file() and out.stat().st_size == info.file_size:
                kept += 1
            else:
                atomic_write_bytes(out, zf.read(info))
                made += 1
            if progress is not None:
                progress.update(1)
    return made, kept


def extract_zip_file(archive: Path, member: str, dst: Path) -> bool:
    """Extract one member of ``archive`` to ``dst`` atomically; False if ``dst`` already has its size."""
    with zipfile.ZipFile(archive) as zf:
        try:
            info = zf.getinfo(member)
        except KeyError:
            raise PrepareError(f"{archive} holds no {member} (it holds {zf.namelist()[:5]})") from None
        if dst.is_file() and dst.stat().st_size == info.file_size:
            return False
        atomic_write_bytes(dst, zf.read(info))
    return True


# ----------------------------------------------------------------------------- resume bookkeeping

class Journal:
    """Append-only record of finished items of one output (JSON lines), for resuming.

    The first line holds the fingerprint of the inputs; a journal of another fingerprint is
    discarded. Each further line is one finished item (``{"key": ..., ...}``), appended only
    after the item's files are in place. A torn last line (killed mid-write) is ignored.

    Args:
        path: the journal file.
        fingerprint: JSON-able description of the inputs.
    """

    def __init__(self, path: Path, fingerprint: dict[str, Any]) -> None:
        self.path = path
        self.fingerprint = json.loads(json.dumps(fingerprint))
        self.done: dict[str, dict] = {}
        if path.is_file():
            lines = path.read_text().splitlines()
            try:
                head = json.loads(lines[0]) if lines else None
            except json.JSONDecodeError:
                head = None
            if isinstance(head, dict) and head.get("fingerprint") == self.fingerprint:
                for line in lines[1:]:
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if isinstance(rec, dict) and "key" in rec:
                        self.done[rec["key"]] = rec
                self._f = open(path, "a")
                return
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "w")
        self._f.write(json.dumps({"fingerprint": self.fingerprint}) + "\n")
        self._f.flush()

    def add(self, record: dict) -> None:
        """Record a finished item (``record["key"]`` names it)."""
        self.done[record["key"]] = record
        self._f.write(json.dumps(record) + "\n")
        self._f.flush()

    def close(self, *, remove: bool = False) -> None:
        """Close the file; ``remove`` deletes it (the output it tracked is complete)."""
        self._f.close()
        if remove:
            self.path.unlink(missing_ok=True)


@dataclass
class Marker:
    """The record of a finished split: the fingerprint of its inputs, its outputs and its summary.

    Stored as ``DATASET_FOLDER/.prepared/NAME.json``; output paths are relative to ``DATASET_FOLDER``.
    """

    folder: Path
    name: str
    fingerprint: dict[str, Any]

    @classmethod
    def at(cls, folder: Path, name: str, fingerprint: dict[str, Any]) -> "Marker":
        return cls(folder, name, json.loads(json.dumps(fingerprint)))

    @property
    def path(self) -> Path:
        return self.folder / MARKER_DIR / f"{self.name}.json"

    def finished(self) -> "Summary | None":
        """The stored summary (``reused``) when the split was finished from the same inputs and every
        output it listed is still there; else None."""
        try:
            rec = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if not isinstance(rec, dict) or rec.get("fingerprint") != self.fingerprint:
            return None
        if not all(os.path.lexists(self.folder / rel) for rel in rec.get("outputs", [])):
            return None
        return Summary.from_json(rec["summary"], reused=True)

    def write(self, summary: "Summary", outputs: list[str]) -> None:
        """Record the split as finished (``outputs``: paths relative to the dataset folder)."""
        atomic_write_json(self.path, {"fingerprint": self.fingerprint, "outputs": outputs,
                                      "summary": summary.to_json()}, indent=1)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- summaries

@dataclass
class Skips:
    """Counted skips by reason, with the first few examples of each."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, example: str, n: int = 1) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + n
        ex = self.examples.setdefault(reason, [])
        if len(ex) < EXAMPLES:
            ex.append(example)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class Summary:
    """The end-of-run report of one prepared split.

    Args:
        name: ``"ade20k val"``.
        counts: what was written, in print order (``images``, ``segments``, ...).
        expected: for some counts, what the official release gives (printed beside them).
        skips: counted skips.
        notes: further lines (statistics to compare, where the output went).
        reused: the split was already prepared from the same inputs (nothing written).
    """

    name: str
    counts: dict[str, int]
    expected: dict[str, str] = field(default_factory=dict)
    skips: Skips = field(default_factory=Skips)
    notes: list[str] = field(default_factory=list)
    reused: bool = False

    def lines(self) -> list[str]:
        parts = []
        for key, value in self.counts.items():
            exp = self.expected.get(key)
            parts.append(f"{value} {key}" + (f" (expected {exp})" if exp else ""))
        state = "already prepared from the same inputs, nothing written" if self.reused else "done"
        out = [f"[{self.name}] {state}: " + ", ".join(parts) + f"; {self.skips.total} skipped"]
        for reason, n in self.skips.counts.items():
            out.append(f"[{self.name}] skipped {n}: {reason}; e.g. {', '.join(self.skips.examples[reason])}")
        out += [f"[{self.name}] {note}" for note in self.notes]
        return out

    def print(self, stream: TextIO | None = None) -> None:
        stream = stream or sys.stdout
        for line in self.lines():
            stream.write(line + "\n")
        stream.flush()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "counts": self.counts, "expected": self.expected,
                "skips": {"counts": self.skips.counts, "examples": self.skips.examples}, "notes": self.notes}

    @classmethod
    def from_json(cls, rec: dict[str, Any], *, reused: bool = True) -> "Summary":
        skips = Skips(dict(rec.get("skips", {}).get("counts", {})), dict(rec.get("skips", {}).get("examples", {})))
        return cls(rec["name"], dict(rec["counts"]), dict(rec.get("expected", {})), skips,
                   list(rec.get("notes", [])), reused)
