"""The shard-set writer: claim the output, keep the valid shards, write the missing ones, commit.

Every job that writes a shard set (pseudo masks, training shards, batch predictions) follows the
protocol of :mod:`pipelines.common.output_set` through one :class:`ShardSetWriter`, so there is one
rule for "may this shard be kept on a re-run":

1. its file exists;
2. its bytes still hash to the sha256 recorded beside it (``.<name>.sha256``) when it was written:
   a shard rewritten with a plausible footer, or one flipped bit anywhere, is rebuilt;
3. the job's own content check passes (the images it was planned to hold, with their inputs'
   fingerprint), given as a function.

The checksum is written before the shard, so a shard on disk always has one (a kill in between
leaves a checksum without a shard: that shard is missing and rebuilt). The hash computed for rule
2 is the manifest entry's, so a kept shard is read once.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, TypeVar

from pipelines.common import output_lock
from pipelines.common.output_set import claim_output, commit_manifest, remove_strays, shard_entry
from pipelines.common.storage import Location, locate

T = TypeVar("T")


def checksum_name(name: str) -> str:
    """The hidden file beside a shard holding the sha256 it had when it was written."""
    head, _, base = name.rpartition("/")
    return f"{head}/.{base}.sha256" if head else f".{base}.sha256"


def write_shard_file(loc: Location, data: bytes) -> str:
    """Write a shard's bytes atomically, its checksum first; returns the sha256.

    Usable from a Ray task (the training shards are written by one task each).
    """
    sha = hashlib.sha256(data).hexdigest()
    parent, _, base = loc.path.replace("\\", "/").rpartition("/")
    sidecar = Location(loc.fs, f"{parent}/.{base}.sha256", loc.uri.rsplit("/", 1)[0] + f"/.{base}.sha256")
    sidecar.write_bytes_atomic(sha.encode())
    loc.write_bytes_atomic(data)
    return sha


class ShardSetWriter:
    """One run's writes to a shard set (see the module docstring); a context manager that gives the
    output's lock back on exit.

    Args:
        out: the output directory (path or URI).
        fingerprint: everything that determines the output (:func:`pipelines.common.output_set.claim_output`).
        what: what the set holds, for messages (``"pseudo masks"``).
        overwrite: replace another plan's output (a new generation) instead of refusing.
        keep: base names of non-shard files that belong in the generation's folders (``vocab.json``).

    Raises:
        OutputConflictError / OutputBusyError: from the claim.
    """

    def __init__(self, out: str | Location, fingerprint: dict[str, Any], *, what: str, overwrite: bool = False,
                 keep: tuple[str, ...] = ()) -> None:
        self.out = locate(out)
        try:
            self.claim = claim_output(self.out, fingerprint, overwrite=overwrite, what=what, command_hint="--overwrite")
        except BaseException:
            output_lock.release(self.out)
            raise
        self.generation = self.claim.generation
        self.folder = self.out.child(self.generation)
        self.folder.makedirs()
        self.keep_names = keep
        self.entries: dict[str, dict[str, Any]] = {}
        self.rebuilt: dict[str, str] = {}

    def __enter__(self) -> "ShardSetWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        output_lock.release(self.out)  # the next job may write it

    def entry_name(self, name: str) -> str:
        """A shard's name in the manifest (relative to the output: ``gen-0001/part-00000.parquet``)."""
        return f"{self.generation}/{name}"

    def kept(self, name: str, check: Callable[[Location], tuple[T, int]]) -> T | None:
        """Keep the existing shard ``name`` (relative to the generation's folder) if it is valid.

        Args:
            name: the shard's path under the generation (``part-00003.parquet``, ``panoptic/part-00000.parquet``).
            check: the job's content check: returns (what the caller keeps of it, its row count), or
                raises ``ValueError``/any exception whose message says why it must be rebuilt.

        Returns:
            ``check``'s value for a kept shard (its manifest entry recorded), else None (the reason
            recorded in :attr:`rebuilt` unless the shard was simply missing).
        """
        loc = self.folder.child(name)
        if not loc.is_file():
            return None
        sidecar = self.folder.child(checksum_name(name))
        try:
            want = sidecar.read_bytes().decode().strip() if sidecar.is_file() else None
        except (OSError, UnicodeDecodeError):
            want = None
        if want is None:
            self.rebuilt[name] = "no checksum recorded when it was written"
            return None
        data = loc.read_bytes()
        if hashlib.sha256(data).hexdigest() != want:
            self.rebuilt[name] = "changed since it was written (sha256 differs)"
            return None
        try:
            value, rows = check(loc)
        except Exception as exc:  # noqa: BLE001 - any unreadable or foreign content: rebuild it
            why = str(exc) if isinstance(exc, ValueError) else f"unreadable ({type(exc).__name__}: {exc})"
            self.rebuilt[name] = why
            return None
        self.entries[name] = {"name": self.entry_name(name), "rows": int(rows), "bytes": len(data), "sha256": want}
        return value

    def write(self, name: str, data: bytes, rows: int) -> dict[str, Any]:
        """Write shard ``name`` (checksum first, both atomic); returns and records its manifest entry."""
        write_shard_file(self.folder.child(name), data)
        return self.add(name, shard_entry(self.entry_name(name), data, rows))

    def add(self, name: str, entry: dict[str, Any]) -> dict[str, Any]:
        """Record the entry of a shard written elsewhere (a Ray task) with :func:`write_shard_file`."""
        self.entries[name] = entry
        return entry

    def remove_strays(self) -> list[str]:
        """Delete the files of the generation no recorded shard names (and their checksums); returns
        the removed paths, relative to the output."""
        listed = {e["name"] for e in self.entries.values()}
        return remove_strays(self.out, self.generation, listed, keep=self.keep_names)

    def commit(self, manifest_name: str, manifest: dict[str, Any]) -> dict[str, Any]:
        """Switch the manifest in (``manifest["shards"]`` must list the set); returns it with its generation."""
        commit_manifest(self.out, manifest_name, manifest, self.generation)
        return {**manifest, "generation": self.generation}
