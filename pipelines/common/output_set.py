"""An output directory belongs to one plan, and a shard set is exact by its manifest.

Every job that writes shards (pseudo masks, training shards, batch predictions) follows the same
protocol, through :class:`pipelines.common.shard_writer.ShardSetWriter`:

1. **Claim** the output (:func:`claim_output`) before its first shard: ``OUT/_fingerprint.json``
   records a fingerprint of everything that determines the output (resolved settings, the
   identities of the input files) and the *generation* the shards go to (``OUT/gen-0001/``).
   The same fingerprint continues that generation (a re-run completes what is missing); a
   different one is refused with the list of what differs, unless the user chose ``--overwrite``,
   which starts the next generation.
2. **Keep** the shards a previous run of the same plan left valid, **write** the missing ones
   atomically into the generation's folder (temporary name, then rename) and record each one's
   row count, size and sha256 (:func:`shard_entry`).
3. **Switch** the manifest last (:func:`commit_manifest`): ``OUT/_manifest.json`` lists the
   generation and every shard with its rows, bytes and sha256; older generations are then
   removed. Until then readers keep reading the previous complete set.
4. **Read** only through the manifest (:func:`verified_shards`): a listed shard that is missing
   or changed, or an unlisted file in the generation's folder, makes the whole set refused.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs

from pipelines.common import output_lock
from pipelines.common.errors import JobError
from pipelines.common.storage import Location, locate, read_json, write_json_atomic

FINGERPRINT_NAME = "_fingerprint.json"
GEN_RE = re.compile(r"^gen-(\d{4,})$")


class OutputConflictError(JobError):
    """The output directory belongs to another plan (its fingerprint differs)."""


class ShardSetError(JobError):
    """A shard set does not match its manifest (missing, changed or extra files), or has none."""


def diff(old: Any, new: Any, where: str = "") -> list[str]:
    """Human-readable differences between two JSON-like values (``key: old -> new``)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new), key=str):
            out += diff(old.get(k), new.get(k), f"{where}.{k}" if where else str(k))
        return out
    return [] if old == new else [f"{where or 'value'}: {old!r} -> {new!r}"]


@dataclass(frozen=True)
class Claim:
    """The generation a run writes to.

    Args:
        generation: folder name under the output (``gen-0001``).
        resumed: the output already belonged to this plan (a re-run completing it).
    """

    generation: str
    resumed: bool


def claim_output(out: str | Location, fingerprint: dict[str, Any], *, overwrite: bool = False,
                 what: str = "shards", command_hint: str = "") -> Claim:
    """Claim ``out`` for the plan ``fingerprint`` (see the module docstring).

    Args:
        out: the output directory (path or URI).
        fingerprint: JSON-able description of everything that determines the output.
        overwrite: replace an output of another plan (a new generation) instead of refusing.
        what: what the directory holds, for the message.
        command_hint: how to choose overwrite, for the message (``--overwrite``).

    Raises:
        OutputConflictError: the directory holds another plan's output and ``overwrite`` is false.
        OutputBusyError: another live job is writing the directory (:mod:`pipelines.common.output_lock`).
    """
    out = locate(out)
    out.makedirs()
    output_lock.acquire(out, what)  # one writer per output, held until this process ends
    loc = out.child(FINGERPRINT_NAME)
    fingerprint = json.loads(json.dumps(fingerprint))  # normalised as it will be stored
    record: dict[str, Any] | None = None
    if loc.is_file():
        try:
            record = read_json(loc)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except Exception as exc:  # noqa: BLE001 - truncated or damaged by hand
            if not overwrite:
                raise OutputConflictError(
                    f"{loc.uri} is damaged ({type(exc).__name__}: {exc}), so whose output {out.uri} holds cannot be "
                    f"told; pass {command_hint or '--overwrite'} to start it again") from exc
            record = {"generation": _latest_generation(out)}
    if record is not None:
        if record.get("fingerprint") == fingerprint:
            return Claim(record["generation"], True)
        if not overwrite:
            changes = diff(record.get("fingerprint"), fingerprint)
            raise OutputConflictError(
                f"{out.uri} holds {what} of another plan; what differs: " + "; ".join(changes[:12])
                + (f" (and {len(changes) - 12} more)" if len(changes) > 12 else "")
                + f". Re-run the original command to complete it, choose another output directory, or pass "
                  f"{command_hint or '--overwrite'} to replace it.")
        generation = _next_generation(record.get("generation"))
    else:
        generation = _next_generation(_latest_generation(out))
    write_json_atomic(loc, {"fingerprint": fingerprint, "generation": generation})
    return Claim(generation, False)


def _latest_generation(out: Location) -> str | None:
    gens = [n for n in out.list_dirs() if GEN_RE.match(n)]
    return gens[-1] if gens else None


def _next_generation(previous: str | None) -> str:
    n = int(GEN_RE.match(previous).group(1)) if previous and GEN_RE.match(previous) else 0
    return f"gen-{n + 1:04d}"



def _files_under(out: Location, folder: str) -> list[str]:
    """Files under ``out/folder`` (recursively), as paths relative to ``out``."""
    loc = out.child(folder)
    if loc.fs.get_file_info(loc.path).type != pafs.FileType.Directory:
        return []
    base = out.path.replace("\\", "/").rstrip("/") + "/"
    infos = loc.fs.get_file_info(pafs.FileSelector(loc.path, recursive=True))
    return sorted(i.path.replace("\\", "/")[len(base):] for i in infos if i.type == pafs.FileType.File)


def remove_strays(out: str | Location, generation: str, listed: set[str], keep: tuple[str, ...] = ()) -> list[str]:
    """Delete the files in ``out/generation`` that no manifest entry names (a copy left by hand, an
    editor's backup): a re-run leaves exactly the set its manifest lists. Hidden files and the
    base names in ``keep`` (``vocab.json``) stay. Returns the removed paths, relative to ``out``."""
    out = locate(out)
    gone = [n for n in _files_under(out, generation) if n not in listed
            and not posixpath.basename(n).startswith(".") and posixpath.basename(n) not in keep]
    for name in gone:
        out.child(name).delete()
    return gone


def manifest_identity(manifest: dict[str, Any]) -> str:
    """The content of a shard set: a hash of its shards' names (less the generation folder), rows
    and sha256. Run bookkeeping (counts written or kept, timings, paths, the generation) is not
    part of it, so a re-run that changes nothing, a rebuilt byte-identical set or a moved folder
    keeps the same identity and every output made from it stays valid."""
    def name(n: str) -> str:
        first, _, rest = n.partition("/")
        return rest if rest and GEN_RE.match(first) else n

    entries = sorted((name(e["name"]), int(e["rows"]), e["sha256"]) for e in manifest.get("shards", []))
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def shard_entry(name: str, data: bytes, rows: int) -> dict[str, Any]:
    """The manifest entry of a shard written from ``data`` (``name`` relative to the output)."""
    return {"name": name, "rows": int(rows), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def commit_manifest(out: str | Location, manifest_name: str, manifest: dict[str, Any], generation: str) -> None:
    """Switch the manifest to a complete set, then remove every other generation's folder.

    Args:
        out: the output directory.
        manifest_name: the manifest file's name (``_manifest.json``).
        manifest: the manifest; gets ``generation`` set; must hold ``shards`` entries.
        generation: the generation the shards are in.
    """
    out = locate(out)
    manifest = {**manifest, "generation": generation}
    write_json_atomic(out.child(manifest_name), manifest)
    for name in out.list_dirs():
        if GEN_RE.match(name) and name != generation:
            out.fs.delete_dir(out.child(name).path)


def verified_shards(out: str | Location, manifest_name: str, *, check_sha: bool = True,
                    allowed: tuple[str, ...] = ()) -> tuple[dict, list[Location]]:
    """The manifest and the shard files of a complete, unchanged set.

    Args:
        out: the output directory.
        manifest_name: the manifest file's name.
        check_sha: compare each file's sha256 too (not only presence and size).
        allowed: base names of files besides the shards that may lie in the generation's folders
            (``vocab.json``).

    Raises:
        ShardSetError: no manifest, or a listed shard missing or changed, or a file in the
            generation's folder the manifest does not list (names them).
    """
    out = locate(out)
    mloc = out.child(manifest_name)
    if not mloc.is_file():
        raise ShardSetError(f"{out.uri}: no {manifest_name}: not a complete shard set (the job did not finish; "
                            f"re-run it)")
    manifest = read_json(mloc)
    entries = manifest.get("shards")
    generation = manifest.get("generation")
    if not isinstance(entries, list) or not generation:
        raise ShardSetError(f"{mloc.uri}: lists no shards with sizes and checksums (written by an older version; "
                            f"re-run the job to rebuild the set)")
    problems, locs = [], []
    for e in entries:
        loc = out.child(e["name"])
        info = loc.fs.get_file_info(loc.path)
        if info.type != pafs.FileType.File:
            problems.append(f"{e['name']} missing")
        elif info.size != e["bytes"] or (check_sha and loc.sha256() != e["sha256"]):
            problems.append(f"{e['name']} changed")
        locs.append(loc)
    listed = {e["name"] for e in entries}
    extra = [n for n in _files_under(out, generation) if n not in listed
             and not posixpath.basename(n).startswith(".") and posixpath.basename(n) not in allowed]
    problems += [f"{n} not in the manifest" for n in extra]
    if problems:
        raise ShardSetError(f"{out.uri}: the shards do not match {manifest_name}: " + "; ".join(problems[:10])
                            + (f" (and {len(problems) - 10} more)" if len(problems) > 10 else "")
                            + "; re-run the job that wrote them")
    return manifest, locs
